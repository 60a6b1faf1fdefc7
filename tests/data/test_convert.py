"""Converters and face detection on fixtures built in the test (real faces from the committed faces-muxspace subset,
corrupt files made here), the image-folder converter on that subset, and on the whole of faces-muxspace when
CLASSEMO_DATA_DIR holds it."""

from __future__ import annotations

import csv
import json
import re
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from classemo.cli import app
from classemo.data.convert import ConversionError, ConversionSummary, assign_splits
from classemo.data.convert_afew_va import convert_afew_va
from classemo.data.convert_images import convert_images
from classemo.data.convert_videos import convert_videos
from classemo.faces import FaceBox, crop_face, largest_face
from classemo.faces.haar import HaarFaceDetector
from classemo.data.format import SPLITS, Manifest, read_manifest, read_split
from classemo.labels import LabelSet
from helpers import MUXSPACE_FACES, MUXSPACE_SUBJECT, MUXSPACE_SUBSET, REPO, require_data_set

LABELS = LabelSet.paper()
MUXSPACE_MAP = REPO / "configs" / "label_maps" / "muxspace.yaml"


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    return [cv2.imread(str(MUXSPACE_SUBSET / "images" / n)) for n in MUXSPACE_FACES]


def _rows(root: Path | str) -> dict[str, dict]:
    return {r["clip_id"]: r for s in SPLITS for r in read_split(root, s).to_pylist()}


def _rejected(root: Path) -> list[dict]:
    with open(root / "rejected.csv", newline="") as f:
        return list(csv.DictReader(f))


def _no_face_image() -> np.ndarray:
    ramp = np.tile(np.linspace(30, 220, 160, dtype=np.uint8), (160, 1))
    return cv2.merge([ramp, ramp.T, np.full_like(ramp, 128)])


def _write_corrupt(folder: Path) -> None:
    """A truncated JPEG and a text file named .jpg."""
    ok, buf = cv2.imencode(".jpg", _no_face_image())
    (folder / "truncated.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    (folder / "notes.jpg").write_text("this is not an image\n")


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


# ---------------------------------------------------------------------------------------------------------------
# faces


def test_detector_finds_face_and_crop_is_square(faces):
    detector = HaarFaceDetector()
    boxes = detector.detect(faces[0])
    assert boxes, "no face found on a real frontal photo"
    box = largest_face(boxes)
    assert box == boxes[0] and box.w > 100  # a 350 px face-centred photo
    assert detector.detect(_no_face_image()) == []
    # A small face on a large canvas is found where it was pasted.
    canvas = np.full((400, 600, 3), 90, np.uint8)
    canvas[150:270, 300:420] = cv2.resize(faces[1], (120, 120))
    found = detector.detect_largest(canvas)
    assert found is not None and found.iou(FaceBox(300, 150, 120, 120)) > 0.3
    crop = crop_face(canvas, found, margin=0.2, size=64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    # A box at the corner still gives a full square (border replicated).
    assert crop_face(canvas, FaceBox(0, 0, 50, 30), margin=0.5, size=32).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="expected an"):
        detector.detect(np.zeros((0, 0), np.uint8))


def test_assign_splits_is_seeded_and_fills_every_split():
    groups = {f"s{i}": "happy" for i in range(3)}
    split = assign_splits(groups, seed=1)
    assert sorted(split.values()) == ["test", "train", "val"]
    assert assign_splits(groups, seed=1) == split
    many = {f"c{i}": LABELS.names[i % 7] for i in range(700)}
    out = assign_splits(many, seed=0)
    for label in LABELS.names:
        counts = [sum(1 for k, s in out.items() if s == name and many[k] == label) for name in SPLITS]
        assert counts == [80, 10, 10]


# ---------------------------------------------------------------------------------------------------------------
# (a) image folder


def test_image_folder_per_class_with_bad_files(tmp_path, faces):
    src = tmp_path / "src"
    for i, label in enumerate(["happy", "sad", "neutral"]):
        (src / label).mkdir(parents=True)
        for j in range(2):
            cv2.imwrite(str(src / label / f"p{i}{j}.jpg"), faces[2 * i + j])
    _write_corrupt(src / "happy")
    cv2.imwrite(str(src / "sad" / "wall.png"), _no_face_image())
    cv2.imwrite(str(src / "neutral" / "p20.png"), faces[6])  # same clip id as neutral/p20.jpg
    (src / "neutral" / "readme.txt").write_text("not data")
    out = tmp_path / "out"

    manifest, summary = convert_images(src, str(out), image_size=48, progress=False)

    assert summary.inputs == 11
    assert summary.converted == 6 and summary.face_found == 6 and summary.whole_image_fallback == 0
    assert summary.rejected == 5 and summary.inputs == summary.converted + summary.rejected
    reasons = {Path(r["path"]).name: r["reason"] for r in _rejected(out)}
    assert reasons["truncated.jpg"].startswith("unreadable image: truncated JPEG")
    assert reasons["notes.jpg"].startswith("unreadable image: not a decodable image")
    assert reasons["wall.png"] == "no face found"
    assert reasons["p20.png"].startswith("duplicate id")
    assert reasons["readme.txt"].startswith("unsupported file type")
    rows = _rows(out)
    assert set(rows) == {f"{lab}/p{i}{j}" for i, lab in enumerate(["happy", "sad", "neutral"]) for j in range(2)}
    row = rows["sad/p10"]
    assert _decode(row["frames"][0]).shape == (48, 48, 3)
    assert (row["label"], row["label_idx"], row["peak_index"], row["va_source"]) == ("sad", 4, 0, "derived")
    assert (row["valence"], row["arousal"]) == pytest.approx(LABELS.default_va["sad"])
    assert row["frame_valence"] is None and row["subject_id"] is None
    assert manifest.extra["conversion"]["rejected"] == 5 and read_manifest(out).image_size == 48
    assert sum(manifest.counts.values()) == 6


def test_image_csv_label_map_and_unmapped_labels(tmp_path, faces):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(src / "images" / f"f{i}.png"), faces[i])
    (src / "labels.csv").write_text("image,emotion\nf0.png,happiness\nf1.png,sadness\nf2.png,surprise\n"
                                    "f3.png,anger\nf3.png,fear\n")
    with pytest.raises(ConversionError, match=r"source labels \['happiness', 'sadness', 'surprise'\]"):
        convert_images(src, str(tmp_path / "bad"), progress=False)

    label_map = tmp_path / "map.yaml"
    label_map.write_text("happiness: happy\nsadness: sad\nsurprise: null\n")
    out = tmp_path / "out"
    _, summary = convert_images(src, str(out), label_map=label_map, progress=False)
    assert (summary.inputs, summary.converted, summary.rejected) == (5, 3, 2)
    assert summary.reasons == {"label dropped by label map": 1, "duplicate id": 1}
    assert {k: r["label"] for k, r in _rows(out).items()} == {"f0": "happy", "f1": "sad", "f3": "anger"}

    label_map.write_text("happiness: joy\n")
    with pytest.raises(ConversionError, match=r"targets \['joy'\] are not in the label set"):
        convert_images(src, str(tmp_path / "bad"), label_map=label_map, progress=False)


def test_image_sequences_by_pattern_split_by_subject(tmp_path, faces):
    src = tmp_path / "src"
    (src / "happy").mkdir(parents=True)
    rows = []
    for s in range(6):
        for f in range(1, 4):
            # The face grows a little along the sequence, as an expression builds to its apex.
            img = cv2.copyMakeBorder(faces[s], 40 - 10 * f, 40 - 10 * f, 40 - 10 * f, 40 - 10 * f,
                                     cv2.BORDER_CONSTANT, value=(f * 20, 0, 0))
            name = f"S{s:03d}_001_{f:08d}.png"
            cv2.imwrite(str(src / "happy" / name), img)
    cv2.imwrite(str(src / "happy" / "stray.png"), faces[0])
    out = tmp_path / "out"
    manifest, summary = convert_images(src, str(out), pattern=r"S(?P<subject>\d+)_(?P<sequence>\d+)_(?P<frame>\d+)",
                                       fps=30.0, image_size=32, seed=3, progress=False)
    assert (summary.inputs, summary.converted, summary.rejected) == (19, 18, 1)
    assert summary.split_by == "subject"
    rows = _rows(out)
    assert len(rows) == 6 and all(len(r["frames"]) == 3 and r["peak_index"] == 2 for r in rows.values())
    assert {r["split"] for r in rows.values()} == set(SPLITS)
    subjects_per_split = {s: {r["subject_id"] for r in rows.values() if r["split"] == s} for s in SPLITS}
    assert not (subjects_per_split["train"] & subjects_per_split["val"])
    assert not (subjects_per_split["train"] & subjects_per_split["test"])
    # Frames are in frame-number order: the border colour (blue channel) rises with the frame number.
    first = rows["000_001"]["frames"]
    assert [int(_decode(b)[0, 0, 0]) for b in first] == sorted(int(_decode(b)[0, 0, 0]) for b in first)


def test_single_photos_split_by_subject_pattern(tmp_path, faces):
    src = tmp_path / "src"
    (src / "happy").mkdir(parents=True)
    for s in range(6):  # six people, three photos each, named like LFW: Person_Name_0001.jpg
        for f in range(1, 4):
            cv2.imwrite(str(src / "happy" / f"Person_{s}_{f:04d}.jpg"), faces[s])
    cv2.imwrite(str(src / "happy" / "nounderscore.jpg"), faces[0])
    out = tmp_path / "out"
    manifest, summary = convert_images(src, str(out), subject_pattern=r"^(?P<subject>.+)_[^_]+$", image_size=32,
                                       seed=1, progress=False)
    assert (summary.inputs, summary.converted, summary.rejected) == (19, 18, 1)
    assert summary.reasons == {"file name does not match subject pattern": 1} and summary.split_by == "subject"
    rows = _rows(out)
    assert len(rows) == 18 and all(len(r["frames"]) == 1 for r in rows.values())
    splits_of: dict[str, set] = {}
    for r in rows.values():
        splits_of.setdefault(r["subject_id"], set()).add(r["split"])
    assert set(splits_of) == {f"Person_{s}" for s in range(6)} and all(len(v) == 1 for v in splits_of.values())
    with pytest.raises(ConversionError, match="not both"):
        convert_images(src, str(out), pattern=r"(?P<subject>\w+)", subject_pattern=r"(?P<subject>\w+)")
    with pytest.raises(ConversionError, match="invalid file-name pattern"):
        convert_images(src, str(out), subject_pattern=r"(?P<subject>[")
    with pytest.raises(ConversionError, match="named group"):
        convert_images(src, str(out), subject_pattern=r"^(.+)_")


# ---------------------------------------------------------------------------------------------------------------
# (b) videos


def _write_video(path: Path, face: np.ndarray, *, num_frames: int = 20, fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    assert writer.isOpened()
    small = cv2.resize(face, (110, 110))
    for t in range(num_frames):
        frame = np.full((240, 320, 3), (60, 110, 90), np.uint8)
        x = 60 + 4 * t  # the face drifts right: the track must follow it
        frame[60:170, x : x + 110] = small
        writer.write(frame)
    writer.release()


def test_videos_windows_and_bad_videos(tmp_path, faces):
    src = tmp_path / "videos"
    src.mkdir()
    for i in range(3):
        _write_video(src / f"v{i}.avi", faces[i])
    (src / "broken.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    blank = cv2.VideoWriter(str(src / "empty_room.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for _ in range(10):
        blank.write(cv2.resize(_no_face_image(), (320, 240)))
    blank.release()
    (src / "labels.csv").write_text("video,label,subject\nv0.avi,happy,a\nv1.avi,sad,b\nv2.avi,anger,c\n"
                                    "broken.avi,fear,d\nempty_room.avi,neutral,e\nmissing.avi,fear,f\nv0.avi,sad,a\n")
    out = tmp_path / "out"
    _, summary = convert_videos(src, str(out), fps=5.0, window=4, image_size=40, progress=False)
    assert (summary.inputs, summary.converted, summary.rejected) == (7, 3, 4)
    assert summary.reasons == {"video could not be decoded": 1, "no face found": 1, "file not found": 1,
                               "duplicate id": 1}
    rows = _rows(out)
    # 20 frames at 10 fps sampled at 5 fps = 10 frames: windows of 4, 4 and a tail of 2 (half a window, kept).
    assert sorted(rows) == sorted(f"v{i}_w{k:03d}" for i in range(3) for k in range(3))
    assert [len(rows[f"v0_w{k:03d}"]["frames"]) for k in range(3)] == [4, 4, 2]
    assert rows["v0_w000"]["fps"] == pytest.approx(5.0)
    for i in range(3):  # windows of one video never straddle splits
        assert len({rows[f"v{i}_w{k:03d}"]["split"] for k in range(3)}) == 1
    # The crop follows the face as it drifts: every crop is mostly face, not background green.
    for data in rows["v1_w001"]["frames"]:
        crop = _decode(data)
        assert crop.shape == (40, 40, 3)
        assert np.abs(crop[15:25, 15:25].astype(int) - (60, 110, 90)).sum(axis=-1).mean() > 40

    _, whole = convert_videos(src, str(tmp_path / "whole"), fps=5.0, progress=False)
    assert sum(whole.clips.values()) == 3 and all(len(r["frames"]) == 10 for r in _rows(tmp_path / "whole").values())


# ---------------------------------------------------------------------------------------------------------------
# (c) AFEW-VA


def _afew_clip(root: Path, name: str, face: np.ndarray, va: list[tuple[float, float]], *, landmarks: bool,
               actor: str) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    frames = {}
    for k, (v, a) in enumerate(va):
        img = np.full((200, 260, 3), 70, np.uint8)
        img[40:160, 70 + 2 * k : 190 + 2 * k] = cv2.resize(face, (120, 120))
        cv2.imwrite(str(folder / f"{k:05d}.png"), img)
        entry = {"valence": v, "arousal": a}
        if landmarks:
            entry["landmarks"] = [[95 + 2 * k, 75], [165 + 2 * k, 75], [130 + 2 * k, 145]]
        frames[f"{k:05d}"] = entry
    (folder / f"{name}.json").write_text(json.dumps({"actor": actor, "video_id": name, "frames": frames}))


def test_afew_va_per_frame_annotations(tmp_path, faces):
    src = tmp_path / "afew"
    _afew_clip(src, "001", faces[0], [(6.0, 3.0), (8.0, 5.0), (7.0, 4.0)], landmarks=True, actor="alice")
    _afew_clip(src, "002", faces[1], [(-6.0, -3.0), (-7.0, -2.0)], landmarks=False, actor="bob")
    _afew_clip(src, "003", faces[2], [(0.0, 0.0), (1.0, 1.0)], landmarks=True, actor="carol")
    (src / "003" / "00001.png").write_bytes((src / "003" / "00001.png").read_bytes()[:100])  # truncated PNG
    (src / "004").mkdir()
    cv2.imwrite(str(src / "004" / "00000.png"), faces[3])  # frames but no JSON
    _afew_clip(src, "005", faces[4], [(30.0, 0.0)], landmarks=True, actor="dan")  # V/A off the -10..10 scale
    out = tmp_path / "out"
    _, summary = convert_afew_va(src, str(out), image_size=32, progress=False)
    assert (summary.inputs, summary.converted, summary.rejected) == (5, 2, 3)
    assert summary.reasons == {"unreadable frame": 1, "no annotation JSON": 1, "bad annotation JSON": 1}
    rows = _rows(out)
    a = rows["001"]
    assert a["frame_valence"] == pytest.approx([0.6, 0.8, 0.7]) and a["frame_arousal"] == pytest.approx([0.3, 0.5, 0.4])
    assert a["valence"] == pytest.approx(0.7) and a["va_source"] == "annotated" and a["peak_index"] == 1
    assert a["label"] == "happy" and a["subject_id"] == "alice"  # nearest default V/A to (0.7, 0.4)
    assert rows["002"]["label"] == "sad" and len(rows["002"]["frames"]) == 2

    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("clip,label\n001,happiness\n002,sadness\n")
    with pytest.raises(ConversionError, match=r"\['happiness', 'sadness'\]"):
        convert_afew_va(src, str(tmp_path / "o2"), labels_csv=labels_csv, progress=False)
    _, summary = convert_afew_va(src, str(tmp_path / "o2"), labels_csv=labels_csv, label_map=MUXSPACE_MAP,
                                 progress=False)
    assert summary.reasons["no label in labels CSV"] == 1  # clip 005 has no CSV row (003, 004 fail earlier)


# ---------------------------------------------------------------------------------------------------------------
# CLI and S3


def test_cli_convert_and_info(tmp_path, faces):
    src = tmp_path / "src"
    (src / "happy").mkdir(parents=True)
    (src / "joy").mkdir()
    for i in range(2):
        cv2.imwrite(str(src / "happy" / f"{i}.jpg"), faces[i])
        cv2.imwrite(str(src / "joy" / f"{i}.jpg"), faces[i + 2])
    runner = CliRunner()
    res = runner.invoke(app, ["data", "convert", "images", str(src), str(tmp_path / "bad"), "--no-progress"])
    assert res.exit_code == 2 and "['joy']" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["data", "convert", "images", str(src), str(tmp_path / "out"), "--no-progress",
                              "--labels", "happy,engaged,neutral", "--image-size", "56"])
    assert res.exit_code == 2 and "['joy']" in res.output
    (tmp_path / "m.yaml").write_text("joy: engaged\n")
    res = runner.invoke(app, ["data", "convert", "images", str(src), str(tmp_path / "out"), "--no-progress",
                              "--labels", "happy,engaged,neutral", "--label-map", str(tmp_path / "m.yaml"),
                              "--image-size", "56"])
    assert res.exit_code == 0, res.output
    assert "4 images in = 4 converted + 0 rejected" in res.output
    res = runner.invoke(app, ["data", "info", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "image size: 56x56, clips: 4" in res.output and "engaged (positive)" in res.output
    res = runner.invoke(app, ["data", "info", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no dataset at" in res.output


@pytest.mark.s3
def test_convert_to_s3(tmp_path, faces, s3_bucket):
    src = tmp_path / "src"
    (src / "neutral").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(src / "neutral" / f"{i}.jpg"), faces[i])
    _write_corrupt(src / "neutral")
    root = f"s3://{s3_bucket}/converted"
    manifest, summary = convert_images(src, root, progress=False)
    assert (summary.converted, summary.rejected) == (3, 2)
    assert read_manifest(root) == manifest
    assert len(_rows(root)) == 3
    from classemo.data.format import open_filesystem

    fs, base = open_filesystem(root)
    with fs.open_input_stream(f"{base}/rejected.csv") as f:
        assert f.read().decode().count("unreadable image") == 2


# ---------------------------------------------------------------------------------------------------------------
# the real labelled folder


def _convert_muxspace(src: Path, out: Path) -> tuple[Manifest, ConversionSummary]:
    """Convert a faces-muxspace folder as docs/data-format.md does: split by person, whole image when no face."""
    return convert_images(src, str(out), whole_image_fallback=True, progress=False, label_map=MUXSPACE_MAP,
                          subject_pattern=MUXSPACE_SUBJECT)


def _splits_of(root: Path) -> dict[str, set[str]]:
    """person -> the splits that hold a photo of them (one each, when the split is by person)."""
    splits_of: dict[str, set[str]] = {}
    for split in SPLITS:
        for subject in read_split(root, split).column("subject_id").to_pylist():
            splits_of.setdefault(subject, set()).add(split)
    return splits_of


def test_muxspace_subset(tmp_path):
    """The committed subset converts as the whole set does: every row in, by person, faces found, every class."""
    with open(MUXSPACE_SUBSET / "labels.csv", newline="") as f:
        emotion_of = {r["image"]: r["emotion"] for r in csv.DictReader(f)}
    manifest, summary = _convert_muxspace(MUXSPACE_SUBSET, tmp_path / "mux")
    assert summary.inputs == len(emotion_of) == summary.converted + summary.rejected
    assert summary.rejected == 0 and summary.converted == summary.face_found + summary.whole_image_fallback
    assert summary.face_found / summary.inputs >= 0.97  # YuNet, measured: 116 of 118 (the whole set: 99.2%)
    # By person: no one in two splits, every split holds someone, and the subset keeps the people it promises.
    assert summary.split_by == "subject"
    splits_of = _splits_of(tmp_path / "mux")
    people = {re.match(MUXSPACE_SUBJECT, name)["subject"] for name in emotion_of}
    assert set(splits_of) == people and len(people) >= 40
    assert all(len(s) == 1 for s in splits_of.values())
    assert {split for s in splits_of.values() for split in s} == set(SPLITS)
    # Every source class is in the subset, so the label map's targets are all 7 labels, with the counts it promises.
    label_map = yaml.safe_load(MUXSPACE_MAP.read_text())
    assert set(emotion_of.values()) == set(label_map)
    total = Counter({label: sum(manifest.label_counts[s][label] for s in SPLITS) for label in LABELS.names})
    assert total == Counter(label_map[e] for e in emotion_of.values())
    assert all(total[label] > 0 for label in LABELS.names), total


@pytest.mark.slow  # ~22 s of CPU; its wall time depends on what else shares the 2 cores
def test_muxspace_folder(tmp_path):
    src = require_data_set("faces-muxspace")
    start, cpu_start = time.perf_counter(), time.process_time()
    manifest, summary = _convert_muxspace(src, tmp_path / "mux")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rate = summary.face_found / summary.inputs
    print(f"\nfaces-muxspace: {summary.format()}\n  face found in {rate:.1%} of {summary.inputs} inputs, "
          f"{seconds:.1f} s wall, {cpu_seconds:.1f} s CPU")
    assert summary.inputs == 1926  # labels.csv rows, one listed twice
    assert summary.rejected == 1 and summary.reasons == {"duplicate id": 1}
    assert summary.converted == 1925 == summary.face_found + summary.whole_image_fallback
    assert rate >= 0.98  # YuNet, the default (Haar found 94.5%: docs/benchmarks-video.md)
    assert manifest.face is not None and manifest.face["detector"] == "yunet" and manifest.face["align"]
    assert manifest.num_clips == 1925 and manifest.label_counts["train"]["positive"] > 0
    # Split by person (the file-name prefix): 1,030 people, none of them in two splits.
    assert summary.split_by == "subject"
    splits_of = _splits_of(tmp_path / "mux")
    assert len(splits_of) == 1030 and all(len(s) == 1 for s in splits_of.values())
    # CPU time, not wall time: the converter is one process, and wall time on a shared machine measures the load.
    assert cpu_seconds < 60
