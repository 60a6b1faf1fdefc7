"""analyze_video on the real media in tests/fixtures/media: tracks, empty reports, stills, outputs and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from classemo.video.decode import VideoError
from classemo.video.pipeline import READING_COLUMNS, analyze_video
from helpers import MEDIA


@pytest.fixture(scope="module")
def results(tiny_predictor, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each medium analysed once; the tests below read the results."""
    out = {}
    for name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "no_face.mp4", "multi_face.jpg"):
        out[name] = analyze_video(MEDIA / name, tiny_predictor, out_dir=tmp_path_factory.mktemp("a"),
                                  progress=False, segment_s=10)
    return out


@pytest.mark.parametrize("name", ["single_face.mp4", "WolfgangLanger_Pexels.mp4"])
def test_one_dominant_track(results: dict, name: str) -> None:
    res = results[name]
    analysed = res.summary["video"]["analysed_frames"]
    frames = sorted((t["frames"] for t in res.tracks.values()), reverse=True)
    assert frames[0] >= 0.8 * analysed, (frames, analysed)  # one track covers most sampled frames ...
    assert sum(frames[1:]) <= 0.1 * analysed  # ... and nothing else of substance was kept
    # Every dropped track is a short false detection, and the drop is reported in summary.json.
    assert all(d["frames"] <= 2 for d in res.dropped.values())
    assert json.loads(res.summary_path.read_text())["dropped_tracks"].keys() == {str(k) for k in res.dropped}


def test_outputs_on_disk(results: dict, tiny_predictor) -> None:
    res = results["WolfgangLanger_Pexels.mp4"]
    tl = pd.read_parquet(res.timeline_path)
    labels = tiny_predictor.labels
    assert list(tl.columns) == ["track", "role", "time", "t_start", "t_end", "num_frames", "label",
                                *[f"p_{n}" for n in labels], "valence", "arousal", "x", "y", "w", "h",
                                *READING_COLUMNS, "reading"]
    assert set(tl["attention"]) <= {"front", "down", "away", "unknown"} and tl["readable"].dtype == bool
    assert set(tl["reading"]) <= {"positive", "negative", "neutral"}
    # Unread windows say why; read ones have a pose and a sharp enough, large enough face.
    assert (tl["unread_reason"] == "").equals(tl["readable"])
    assert tl.loc[tl["readable"], ["yaw", "pitch", "roll"]].notna().all().all()
    assert len(tl) > 5 and tl["time"].is_monotonic_increasing
    assert ((tl[[f"p_{n}" for n in labels]].sum(axis=1) - 1).abs() < 1e-4).all()
    assert tl["valence"].between(-1, 1).all() and tl["arousal"].between(-1, 1).all()
    # Windows cover the whole track: first window starts at the track's first frame, last ends at its last.
    main = max(res.tracks, key=lambda k: res.tracks[k]["frames"])
    mt = tl[tl["track"] == main]
    assert mt["t_start"].min() == pytest.approx(res.tracks[main]["first_s"])
    assert mt["t_end"].max() == pytest.approx(res.tracks[main]["last_s"])
    assert (mt["num_frames"] <= tiny_predictor.num_frames).all()
    summary = json.loads(res.summary_path.read_text())
    assert summary["duration_s"] == pytest.approx(472 / 23.976, abs=0.1)
    assert len(summary["segments"]) == 2 and summary["segments"][1]["end_s"] == pytest.approx(19.69, abs=0.1)
    assert "No face images are stored" in summary["privacy"] and not (res.out_dir / "crops").exists()
    html = res.report_path.read_text()
    assert html.count("data:image/png;base64,") == 3 and "<script" not in html and "http" not in html
    assert "Where the students looked" in html and 'class="headline"' in html
    # One person in view: the heuristic names no teacher, so the teacher measures are absent, not invented.
    assert set(tl["role"]) == {"student"} and summary["overall"]["teacher_activity"] is None


def test_no_face_gives_an_empty_valid_report(results: dict) -> None:
    res = results["no_face.mp4"]
    assert res.summary["no_faces"] and res.tracks == {} and len(res.timeline) == 0
    tl = pd.read_parquet(res.timeline_path)
    assert len(tl) == 0 and "p_happy" in tl.columns
    summary = json.loads(res.summary_path.read_text())
    assert summary["overall"]["classroom_activity"] is None and summary["overall"]["rating"] is None
    assert all(s["num_rows"] == 0 for s in summary["segments"])
    html = res.report_path.read_text()
    assert "No faces were found" in html and html.rstrip().endswith("</html>")


def test_still_image_is_one_frame_with_several_faces(results: dict) -> None:
    res = results["multi_face.jpg"]
    assert len(res.tracks) >= 4 and not res.dropped
    assert len(res.timeline) == len(res.tracks) and (res.timeline["time"] == 0).all()
    assert res.summary["duration_s"] == 0 and len(res.summary["segments"]) == 1
    assert res.summary["segments"][0]["num_rows"] == len(res.tracks)


def test_save_crops_opt_in(tiny_predictor, tmp_path: Path) -> None:
    res = analyze_video(MEDIA / "single_face.mp4", tiny_predictor, out_dir=tmp_path, progress=False,
                        save_crops=True, teacher="0")
    crops = sorted((tmp_path / "crops").rglob("*.png"))
    assert len(crops) == res.tracks[0]["frames"] and "WERE saved" in res.summary["privacy"]
    assert set(res.timeline["role"]) == {"teacher"} and res.summary["overall"]["teacher_activity"] is not None


def test_bad_input_and_settings(tmp_path: Path, tiny_predictor) -> None:
    txt = tmp_path / "lesson.mp4"
    txt.write_text("not a video\n" * 100)
    with pytest.raises(VideoError, match="lesson.mp4: cannot be opened as a video"):
        analyze_video(txt, tiny_predictor, out_dir=tmp_path / "o", progress=False)
    single = MEDIA / "single_face.mp4"
    with pytest.raises(ValueError, match="segment length must be a positive number"):
        analyze_video(single, tiny_predictor, out_dir=tmp_path / "o", segment_s=0, progress=False)
    with pytest.raises(ValueError, match="longer than the model takes"):
        analyze_video(single, tiny_predictor, out_dir=tmp_path / "o", window=99, progress=False)
    with pytest.raises(ValueError, match="teacher must be"):
        analyze_video(single, tiny_predictor, out_dir=tmp_path / "o", teacher="the tall one", progress=False)


def test_cli(tmp_path: Path, tiny_predictor) -> None:
    from classemo.cli import app

    ckpt = tiny_predictor.info["source"]
    runner = CliRunner()
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00" * 1000)
    r = runner.invoke(app, ["analyze", str(bad), "--model", ckpt, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "x.mp4: cannot be opened as a video" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["analyze", str(MEDIA / "single_face.mp4"), "--model", ckpt,
                            "--out", str(tmp_path / "o"), "--no-progress", "--segment-s", "1"])
    assert r.exit_code == 0, r.output
    assert "1 person(s) tracked" in r.output and (tmp_path / "o" / "report.html").is_file()
    assert len(json.loads((tmp_path / "o" / "summary.json").read_text())["segments"]) == 3
    r = runner.invoke(app, ["analyze", str(MEDIA / "single_face.mp4"), "--model",
                            str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_checkpoint_without_face_settings_analyses_with_haar(tmp_path: Path) -> None:
    """A checkpoint made before face settings existed keeps its old path: Haar boxes, unaligned crops."""
    import torch

    from classemo.checkpoint import save_model_checkpoint
    from classemo.labels import LabelSet
    from classemo.models import create_model
    from classemo.predictor import Predictor

    torch.manual_seed(0)
    save_model_checkpoint(create_model("classemo_tiny", num_classes=7), tmp_path / "old", labels=LabelSet.paper())
    old = Predictor.from_checkpoint(tmp_path / "old", device="cpu")
    res = analyze_video(MEDIA / "single_face.jpg", old, out_dir=tmp_path / "o", progress=False)
    face = res.summary["analysis"]["face"]
    assert face["detector"] == "haar" and not face["align"] and res.summary["analysis"]["face_detections"] == 1


def test_a_real_classroom_reads_as_a_person_sees_it(tmp_path: Path) -> None:
    """classroom_intel.mp4 with the built-in model: four adults at desks, smiling or neutral, one of whom gets up and
    walks to his desk. No teacher is in view, and the headline says what a person sees: neutral or positive."""
    from classemo.predictor import Predictor
    from classemo.report import headline

    res = analyze_video(MEDIA / "classroom_intel.mp4", Predictor.from_checkpoint("builtin"), out_dir=tmp_path,
                        progress=False)
    o = res.summary["overall"]
    # Four people, one track each (the man who sits down keeps his), and none of them is the teacher.
    assert len(res.tracks) == 4 and {t["role"] for t in res.tracks.values()} == {"student"} and o["teacher"] is None
    assert headline(res.summary).startswith(("Mostly neutral", "Mostly positive")), headline(res.summary)
    # 3.4%: the man in glasses laughing reads as anger (0.52-0.80) in a few frontal windows
    assert o["student_negative"] <= 0.05 and o["student_positive"] > o["student_negative"]
    assert o["readable_share"] >= 0.5 and o["attention"]["front"] >= 0.5
    assert abs(sum(o["attention"].values()) - 1) < 1e-9
    assert "Where the students looked" in res.report_path.read_text()
