"""The non-Ray half of the batch job (classemo.video.batch, .overview, .stages): sources and lesson names, markers,
chunks put back in order, and the cross-lesson summary. Ray itself is tested in tests/jobs/test_analyze_job.py."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classemo.synth.classroom import make_classroom_video
from classemo.video import batch
from classemo.video.batch import BatchError, Lesson, LessonAssembly
from classemo.video.overview import lessons_table, overview_html, sparkline
from classemo.video.pipeline import analyze_video, write_analysis
from classemo.video.stages import FaceObserver, WindowAssembler, embed_chunks
from classemo.video.track import Tracker


@pytest.fixture(scope="module")
def lesson_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s, teacher + 3 students, one of whom looks away: with `LOST_S` a track ends mid-video."""
    path = tmp_path_factory.mktemp("lesson") / "lesson.mp4"
    make_classroom_video(path, scenario="lively", num_students=3, seconds=4, fps=5, seed=4, size=(480, 270))
    return path


LOST_S = 0.3  # tracks end after 0.3 s unseen, so that chunks also end tracks, not only the video's end


@pytest.fixture(scope="module")
def observed(lesson_video: Path, tiny_predictor) -> tuple:
    """Stage 1 with small chunks (6 crops), so that a 4 s video has many: (observation, chunks)."""
    observer = FaceObserver(lesson_video, tiny_predictor.face_path(), Tracker(max_lost_s=LOST_S), fps=5.0,
                            embed_batch=6)
    chunks = list(observer)
    return observer.observation, chunks


# ------------------------------------------------------------------------------------------- sources, names


def test_a_folder_is_searched_recursively_and_names_follow_its_layout(tmp_path: Path) -> None:
    for rel in ("mon/math.mp4", "mon/math.MOV", "tue/art.mkv", "notes.txt", "tue/still.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    lessons = batch.list_lessons(str(tmp_path))
    # Two videos that would share a folder keep their extension; images and other files are no lessons.
    assert {ls.name: Path(ls.source).relative_to(tmp_path).as_posix() for ls in lessons} == {
        "mon/math.mp4": "mon/math.mp4", "mon/math.MOV": "mon/math.MOV", "tue/art": "tue/art.mkv"}


def test_a_list_file_names_videos_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    listing = tmp_path / "a" / "todo.txt"
    listing.write_text(f"# week 1\n\nx/one.mp4\n{tmp_path}/a/y/two.mp4\nx/one.mp4\ns3://b/p/three.mp4\n")
    lessons = batch.list_lessons(str(listing))
    assert [ls.source for ls in lessons] == [f"{tmp_path}/a/x/one.mp4", f"{tmp_path}/a/y/two.mp4", "s3://b/p/three.mp4"]
    assert [ls.name for ls in lessons] == [f"{str(tmp_path)[1:]}/a/x/one", f"{str(tmp_path)[1:]}/a/y/two",
                                           "b/p/three"]  # no common folder between S3 and the disk
    assert batch.lesson_names(["/d/a/x/one.mp4", "/d/a/y/two.mp4"]) == ["x/one", "y/two"]
    assert batch.lesson_names(["s3://b/in/one.mp4"]) == ["one"]


def _src(folder: Path, kind: str) -> Path:
    if kind == "missing":
        return folder / "missing"
    if kind == "empty folder":
        return folder
    listing = folder / "list.txt"
    if kind == "empty list":
        listing.write_text("# nothing yet\n\n")
    else:
        listing.write_bytes(b"\xff\xfe\x00 not text")
    return listing


@pytest.mark.parametrize("kind, message", [("missing", "no such folder, S3 prefix, video or list file"),
                                           ("empty folder", "no videos found in"),
                                           ("empty list", "names no video"),
                                           ("binary list", "cannot read the list file")])
def test_bad_sources_say_what_is_wrong(tmp_path: Path, kind: str, message: str) -> None:
    with pytest.raises(BatchError, match=message):
        batch.list_lessons(str(_src(tmp_path, kind)))


@pytest.mark.s3
def test_s3_prefix_fetch_and_unreadable_object(s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="in/w1/a.mp4", Body=b"video-a")
    s3.put_object(Bucket=s3_bucket, Key="in/b.avi", Body=b"video-b")
    s3.put_object(Bucket=s3_bucket, Key="in/readme.md", Body=b"-")
    lessons = batch.list_lessons(f"s3://{s3_bucket}/in")
    assert lessons == [Lesson("b", f"s3://{s3_bucket}/in/b.avi"), Lesson("w1/a", f"s3://{s3_bucket}/in/w1/a.mp4")]
    local = batch.fetch(lessons[1].source, tmp_path)
    assert local.name == "a.mp4" and local.read_bytes() == b"video-a"
    with pytest.raises(BatchError, match=f"cannot read s3://{s3_bucket}/in/gone.mp4"):
        batch.fetch(f"s3://{s3_bucket}/in/gone.mp4", tmp_path)
    batch.write_bytes(f"s3://{s3_bucket}/out", "x/y.txt", b"hello")
    assert batch.read_bytes(f"s3://{s3_bucket}/out", "x/y.txt") == b"hello"
    assert batch.read_bytes(f"s3://{s3_bucket}/out", "x/none.txt") is None


# ----------------------------------------------------------------------------------------------- markers


def test_a_lesson_is_complete_only_with_its_marker_and_the_same_settings(tmp_path: Path, monkeypatch) -> None:
    local = tmp_path / "staged"
    local.mkdir()
    for name in batch.OUTPUTS:
        (local / name).write_text(name)
    dst, lesson, settings = str(tmp_path / "dst"), Lesson("w1/math", "/v/math.mp4"), {"model": {"v": 1}, "fps": 5.0}
    assert not batch.is_complete(dst, lesson.name, settings)
    marker = batch.publish(local, dst, lesson, settings)
    assert batch.read_marker(dst, lesson.name) == json.loads(json.dumps(marker))
    assert batch.is_complete(dst, lesson.name, settings)
    assert not batch.is_complete(dst, lesson.name, {**settings, "fps": 2.0})  # another analysis: redo
    # A copy cut short (the job killed between two files) leaves no marker, not an old one next to new files.
    real = batch.write_bytes

    def killed_at_the_summary(dst: str, name: str, data: bytes) -> None:
        if name.endswith("summary.json"):
            raise OSError("killed")
        real(dst, name, data)

    monkeypatch.setattr(batch, "write_bytes", killed_at_the_summary)
    with pytest.raises(OSError):
        batch.publish(local, dst, lesson, settings)
    assert batch.read_marker(dst, lesson.name) is None and not batch.is_complete(dst, lesson.name, settings)


def test_rejected_csv(tmp_path: Path) -> None:
    batch.write_rejected(str(tmp_path), [("s3://b/z.mp4", "the file is empty"), ("a, b.mp4", 'says "no"')])
    rows = pd.read_csv(tmp_path / "rejected.csv")
    assert list(rows.columns) == ["video", "reason"] and rows["video"].tolist() == ["a, b.mp4", "s3://b/z.mp4"]


# ------------------------------------------------------------------------------------- stages and assembly


def test_chunks_replayed_out_of_order_give_analyze_videos_outputs(lesson_video: Path, observed: tuple,
                                                                  tiny_predictor, tmp_path: Path) -> None:
    """The batch job's path (observe -> embed -> assemble from shuffled chunks -> write) equals analyze_video."""
    ref = analyze_video(lesson_video, tiny_predictor, out_dir=tmp_path / "ref", progress=False, embed_batch=6,
                        tracker=Tracker(max_lost_s=LOST_S))
    observation, chunks = observed[0], copy.deepcopy(observed[1])
    assert len(chunks) > 5 and chunks[-1].final and any(c.ended for c in chunks)
    assert sum(len(c.tracks) for c in chunks) == observation.face_detections
    embed_chunks(tiny_predictor, chunks)
    order = list(range(len(chunks)))
    random.Random(0).shuffle(order)
    order.insert(3, order[0])  # a retried task sends a chunk again: ignored
    asm = LessonAssembly(tiny_predictor.num_frames, tiny_predictor.num_frames // 2, lambda dtype: tiny_predictor)
    for i in order:
        assert not asm.done
        asm.add(i, chunks[i], observation if chunks[i].final else None)
    assert asm.done
    res = write_analysis(tmp_path / "job", lesson_video, asm.observation, asm.rows, tiny_predictor, fps=5.0,
                         window=tiny_predictor.num_frames, stride=tiny_predictor.num_frames // 2)
    pd.testing.assert_frame_equal(pd.read_parquet(res.timeline_path), pd.read_parquet(ref.timeline_path),
                                  check_exact=True)
    strip = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k != "timings_s"}  # noqa: E731
    assert strip(res.summary_path) == strip(ref.summary_path)
    assert res.report_path.read_text() == ref.report_path.read_text()


def test_fused_embedding_agrees_to_float_tolerance(observed: tuple, tiny_predictor) -> None:
    one, fused = copy.deepcopy(observed[1]), copy.deepcopy(observed[1])
    embed_chunks(tiny_predictor, one)
    embed_chunks(tiny_predictor, fused, fuse=True)
    for a, b in zip(one, fused):
        assert a.crops == b.crops == [] and a.features.shape == b.features.shape
        np.testing.assert_allclose(a.features, b.features, atol=1e-4)


def test_a_chunk_must_be_embedded_first(observed: tuple, tiny_predictor) -> None:
    with pytest.raises(ValueError, match="not been embedded"):
        WindowAssembler(tiny_predictor, 8, 4).add(copy.deepcopy(observed[1][0]))


# ------------------------------------------------------------------------------------------------ overview


def _summary(name: str, scores: list[float | None], duration: float = 180.0) -> dict:
    """A summary shaped as write_analysis writes it, with chosen per-segment classroom activity."""
    segs = [{"index": i, "start_s": 60.0 * i, "end_s": 60.0 * (i + 1), "num_rows": 0 if v is None else 10,
             "teacher": 0, "students": {"1": {}, "2": {}}, "teacher_activity": 0.5, "student_positive": 0.3,
             "student_negative": 0.1, "classroom_activity": v, "effectiveness": v, "rating": "Good",
             "teacher_evaluation": "Active", "student_evaluation": "Normal", "classroom_evaluation": "Normal"}
            for i, v in enumerate(scores)]
    overall = {**segs[0], "classroom_activity": 0.4, "effectiveness": 0.45, "rating": "Good"}
    return {"video": {"path": f"s3://b/{name}.mp4"}, "duration_s": duration, "segments": segs, "overall": overall}


def test_lessons_table_has_a_row_per_lesson_and_segment() -> None:
    table = lessons_table({"b": _summary("b", [0.2, None, 0.6]),
                           "a": _summary("a", [0.5])})
    assert table[["lesson", "segment"]].values.tolist() == [["a", 0], ["b", 0], ["b", 1], ["b", 2]]
    assert table["classroom_activity"].dtype == float and np.isnan(table.loc[2, "classroom_activity"])
    assert (table["lesson_effectiveness"] == 0.45).all() and table["num_students"].tolist() == [2, 2, 2, 2]


def test_overview_links_reports_draws_sparklines_and_lists_rejections() -> None:
    page = overview_html({"w1/math": _summary("math", [0.2, None, 0.6]),
                          "art": _summary("art", [0.5])},
                         [("s3://b/<bad>.mp4", "no face found in 20 analysed frames")])
    assert 'href="w1/math/report.html"' in page and 'href="art/report.html"' in page
    assert page.count("<svg") == 2 and "&lt;bad&gt;.mp4" in page and "<bad>" not in page
    assert "sortBy" in page and "http" not in page  # self-contained: nothing loaded from elsewhere
    # A segment without data breaks the line rather than drawing a zero.
    assert sparkline([(30, 0.2), (90, None), (150, 0.6)], 180, "ca").count("<polyline") == 2
    assert sparkline([(30, 1.0), (90, 0.0)], 180, "ca").count(",") == 2


def test_no_face_reasons() -> None:
    base = {"video": {"analysed_frames": 20}, "analysis": {"detector": "YuNetDetector", "min_track_s": 1.0}}
    assert batch.no_face_reason({**base, "analysis": {**base["analysis"], "face_detections": 0}}) == \
        "no face found in 20 analysed frames (YuNetDetector)"
    assert "no track lasted 1.00 s" in batch.no_face_reason({**base, "analysis": {**base["analysis"],
                                                                                   "face_detections": 3}})
