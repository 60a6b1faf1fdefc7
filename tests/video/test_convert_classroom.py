"""The annotated-classroom converter on a synthetic classroom (its ground truth is the annotation) and bad input."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from classemo.cli import app
from classemo.data.convert import ConversionError
from classemo.video.convert_classroom import convert_classroom, match_detections
from classemo.data.format import SPLITS, read_manifest, read_split
from classemo.labels import LabelSet
from classemo.synth.classroom import make_classroom_video

FPS = 5


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One 4-second classroom (teacher + 4 students) and three broken inputs beside it."""
    root = tmp_path_factory.mktemp("annotated")
    truth = make_classroom_video(root / "room.mp4", scenario="lively", num_students=4, seconds=4, fps=FPS, seed=3)
    (root / "notavideo.mp4").write_text("this is not a video\n")
    (root / "notavideo.json").write_text(json.dumps({"people": truth["people"][:1]}))
    make_classroom_video(root / "unannotated.mp4", scenario="dull", num_students=1, seconds=1, fps=FPS, seed=4)
    (root / "unannotated.json").unlink()
    make_classroom_video(root / "badjson.mp4", scenario="dull", num_students=1, seconds=1, fps=FPS, seed=5)
    (root / "badjson.json").write_text(json.dumps({"people": [{"id": "x", "boxes": [[0, 0, 9, 9]], "labels": []}]}))
    return root, truth


def test_clips_follow_the_annotation(videos: tuple[Path, dict], tmp_path: Path) -> None:
    src, truth = videos
    manifest, summary = convert_classroom(src, str(tmp_path / "ds"), stride=2, progress=False)
    assert (summary.inputs, summary.converted, summary.rejected) == (4, 1, 3)
    assert summary.reasons == {"video could not be decoded": 1, "no annotation JSON": 1, "bad annotation JSON": 1}
    with open(tmp_path / "ds" / "rejected.csv", newline="") as f:
        rejected = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert "equal length" in rejected["badjson.json"] and "notavideo.mp4" in rejected

    people = {p["id"]: p for p in truth["people"]}
    rows = [r for s in SPLITS for r in read_split(tmp_path / "ds", s).to_pylist()]
    assert len(rows) == manifest.num_clips > 0
    splits_of = defaultdict(set)
    per_person = defaultdict(int)
    for r in rows:
        person = people[r["clip_id"].split("/")[1]]
        splits_of[r["subject_id"]].add(r["split"])
        per_person[person["id"]] += 1
        assert len(r["frames"]) == 4 and r["peak_index"] == 2 and r["va_source"] == "annotated"
        # The window's frames are the person's detections between the first and last frame its id names, and its
        # label and V/A are the annotation's at the centre one.
        first, last = (int(x) for x in r["clip_id"].split("/f")[1].split("-"))
        frames = _subsequence(person["valence"], r["frame_valence"], first, last)
        assert frames is not None, f"{r['clip_id']}: its V/A trace is not {person['id']}'s annotation"
        assert r["label"] == person["labels"][frames[2]] and r["valence"] == pytest.approx(person["valence"][frames[2]],
                                                                                            abs=1e-4)
    assert set(per_person) == set(people), "every annotated person gets clips"
    # 20 frames, windows of 4 every 2 detections: about 9 per person who is seen throughout.
    assert max(per_person.values()) >= 8
    assert all(len(s) == 1 for s in splits_of.values()), "a person is never in two splits"
    assert manifest.extra["conversion"]["split_by"] == "subject" and manifest.image_size == 48


def _subsequence(values: list[float], trace: list[float], first: int, last: int) -> list[int] | None:
    """Frame indices first = i0 < i1 < ... = last whose values equal the trace (float32-rounded), or None."""
    out, i = [], first
    for v in trace:
        while i <= last and abs(values[i] - v) > 1e-4:
            i += 1
        if i > last:
            return None
        out.append(i)
        i += 1
    return out if out[0] == first and out[-1] == last else None


def test_match_detections_is_one_to_one() -> None:
    truth = np.array([[0, 0, 10, 10], [8, 0, 10, 10], [100, 100, 10, 10]], float)
    dets = np.array([[7, 0, 10, 10], [1, 0, 10, 10]], float)
    # Box 0 overlaps both detections; it takes the closer one and leaves the other to box 1.
    assert match_detections(truth, dets, 0.3) == [1, 0, None]
    assert match_detections(truth, np.zeros((0, 4)), 0.3) == [None, None, None]


def test_cli_and_errors(videos: tuple[Path, dict], tmp_path: Path) -> None:
    src, _ = videos
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["data", "convert", "classroom", str(src), str(out), "--stride", "4",
                                      "--image-size", "32", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "4 videos in = 1 converted + 3 rejected" in result.output
    assert read_manifest(out).image_size == 32
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConversionError, match="no videos"):
        convert_classroom(empty, str(tmp_path / "x"), progress=False)
    with pytest.raises(ConversionError, match="stride"):
        convert_classroom(src, str(tmp_path / "x"), window=4, stride=5, progress=False)
    bad = CliRunner().invoke(app, ["data", "convert", "classroom", str(tmp_path / "missing"), str(out)])
    assert bad.exit_code == 2 and "not found" in bad.output and "Traceback" not in bad.output
    assert LabelSet.paper().names == tuple(d["name"] for d in read_manifest(out).labels)
