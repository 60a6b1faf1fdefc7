"""Converters from common dataset shapes into the frame-sequence format, and the `classemo data` commands.

Three input shapes:

- a labelled image folder (a CSV `image,label` or one folder per class), optionally grouped into sequences by a
  filename regex with named groups `subject`, `sequence` and `frame` (CK+ style);
- video clips plus a labels CSV (DAiSEE/DFEW style): frames sampled at a chosen fps, the largest face track
  cropped, one clip per video or per window of N frames;
- AFEW-VA style: one folder of frames per clip plus a JSON of per-frame valence/arousal.

Every input unit (an image, a video, a clip folder) is either converted or listed in `<out>/rejected.csv` with the
reason, so `inputs = converted + rejected` always holds. One bad file never stops a run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from classemo.data.label_map import LabelMapError, load_label_map, parse_label_set, resolve_label_map
from classemo.labels import LabelSet

if TYPE_CHECKING:
    import numpy as np

    from classemo.data.faces import FaceBox, HaarFaceDetector
    from classemo.data.format import Manifest

CONVERTER_VERSION = "1"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_NAMES = ("train", "val", "test")


class ConversionError(ValueError):
    """Input that stops a conversion before it starts (missing folder, bad CSV, unmapped labels)."""


@dataclass
class ConversionSummary:
    """What a converter did; `inputs == converted + rejected` counts input units (images, videos or clips)."""

    kind: str  # images | videos | afew-va
    unit: str  # what one input is: image, video or clip
    inputs: int = 0
    converted: int = 0
    rejected: int = 0
    face_found: int = 0  # converted units whose face came from the detector (or AFEW-VA landmarks)
    whole_image_fallback: int = 0  # converted units cropped as the whole image: no face found, face-centred input
    clips: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLIT_NAMES})
    frames: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # rejection reason (without details) -> count
    split_by: str = "clip"  # subject | clip | video

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"{self.kind}: {self.inputs} {self.unit}s in = {self.converted} converted + {self.rejected} rejected",
            f"  face found: {self.face_found}, whole-image fallback: {self.whole_image_fallback}",
            f"  clips: {self.clips} ({self.frames} frames), split by {self.split_by}",
        ]
        lines += [f"  rejected, {reason}: {n}" for reason, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines)


class _Rejects:
    """Collects (path, reason) rows for rejected.csv and keeps the summary's counts in step."""

    def __init__(self, summary: ConversionSummary) -> None:
        self.summary = summary
        self.rows: list[tuple[str, str]] = []

    def add(self, path: str | os.PathLike, reason: str, detail: str = "") -> None:
        self.rows.append((str(path), f"{reason}: {detail}" if detail else reason))
        self.summary.rejected += 1
        self.summary.reasons[reason] = self.summary.reasons.get(reason, 0) + 1

    def write(self, root: str) -> None:
        from classemo.data.format import open_filesystem

        fs, base = open_filesystem(root)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["path", "reason"])
        writer.writerows(self.rows)
        fs.create_dir(base, recursive=True)
        with fs.open_output_stream(f"{base.rstrip('/')}/rejected.csv") as f:
            f.write(buf.getvalue().encode())


@dataclass
class _Clip:
    """A planned output clip: its input units (in frame order), label and the key that decides its split."""

    clip_id: str
    label: str
    paths: list[Path]
    subject_id: str | None = None
    group: str = ""  # split unit: subject when known, else the clip (or source video)
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces


def assign_splits(
    groups: dict[str, str], fractions: Sequence[float] = DEFAULT_FRACTIONS, *, seed: int = 0, stratify: bool = True
) -> dict[str, str]:
    """Seeded split of groups (subjects, or clips when there are no subjects) into train/val/test.

    Args:
        groups: group key (a subject, or a clip) -> the group's label (its most common one). Each group lands
            wholly in one split, so no subject is in two splits.
        fractions: train, val, test fractions (normalised).
        seed: Shuffle seed.
        stratify: Cut each label's groups separately so every split sees every label that has enough groups.

    Returns:
        group key -> split name.
    """
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ConversionError(f"split fractions must be three non-negative numbers, got {list(fractions)}")
    total = sum(fractions)
    fractions = [f / total for f in fractions]
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = defaultdict(list)
    for key in sorted(groups):
        by_label[groups[key] if stratify else ""].append(key)
    out: dict[str, str] = {}
    for label in sorted(by_label):
        keys = by_label[label]
        rng.shuffle(keys)
        counts = [0, 0, 0]
        for key in keys:
            # The split furthest below its target (relative) takes the next group: small sets still fill val/test.
            target = [f * len(keys) for f in fractions]
            deficit = [(t - c) / t if t > 0 else -1.0 for t, c in zip(target, counts)]
            i = max(range(3), key=lambda j: deficit[j])
            counts[i] += 1
            out[key] = SPLIT_NAMES[i]
    return out


def _split_clips(clips: list[_Clip], fractions: Sequence[float], seed: int) -> str:
    """Assign `clip.split` by group; returns what the split was by ('subject' or 'clip')."""
    by_group: dict[str, Counter] = defaultdict(Counter)
    for c in clips:
        by_group[c.group][c.label] += 1
    group_label = {g: cnt.most_common(1)[0][0] for g, cnt in by_group.items()}
    has_subjects = any(c.subject_id is not None for c in clips)
    # Stratifying subjects by their main label only makes sense with many subjects per label.
    stratify = not has_subjects or len(group_label) >= 10 * max(1, len(set(group_label.values())))
    split_of = assign_splits(group_label, fractions, seed=seed, stratify=stratify)
    for c in clips:
        c.split = split_of[c.group]
    return "subject" if has_subjects else "clip"


def _read_image(path: Path) -> "np.ndarray":
    """Decode an image file to BGR, refusing truncated JPEGs (OpenCV would pad them with grey silently)."""
    import cv2
    import numpy as np

    data = path.read_bytes()
    if not data:
        raise ValueError("empty file")
    # Some writers leave padding after the end-of-image marker; only its total absence means truncation.
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-1024:]:
        raise ValueError("truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return image


def _encode(image: "np.ndarray", frame_format: str) -> bytes:
    import cv2

    ext, params = (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]) if frame_format == "png" else (
        ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode a {frame_format} frame")
    return buf.tobytes()


def face_track(
    frames: Sequence["np.ndarray"], detector: "HaarFaceDetector", *, min_iou: float = 0.2
) -> list["FaceBox"] | None:
    """The largest face's track through a sequence: one box per frame, or None when no frame has a face.

    The track starts at the frame holding the largest detection overall and extends both ways, taking in each
    frame the detection that overlaps the previous box most (at least `min_iou`); a frame without one keeps the
    previous box, since faces in a clip move little between sampled frames.
    """
    detections = [detector.detect(f) for f in frames]
    start = max(range(len(frames)), key=lambda i: max((b.area for b in detections[i]), default=-1))
    if not detections[start]:
        return None
    track: list = [None] * len(frames)
    track[start] = detections[start][0]
    for order in (range(start + 1, len(frames)), range(start - 1, -1, -1)):
        prev = track[start]
        for i in order:
            best = max(detections[i], key=prev.iou, default=None)
            if best is not None and prev.iou(best) >= min_iou:
                prev = best
            track[i] = prev
    return track


def _derived_va(label: str, labels: LabelSet) -> dict[str, Any]:
    valence, arousal = labels.default_va[label]
    return {"valence": valence, "arousal": arousal, "frame_valence": None, "frame_arousal": None,
            "va_source": "derived"}


def _write(
    rows: Iterator[dict], out: str, labels: LabelSet, summary: ConversionSummary, rejects: _Rejects, *,
    image_size: int, source: str, extra: dict[str, Any],
) -> "Manifest":
    from classemo.data.format import write_dataset

    def counted() -> Iterator[dict]:
        for row in rows:
            summary.clips[row["split"]] += 1
            summary.frames += len(row["frames"])
            yield row

    # write_dataset consumes rows lazily, so the summary is complete only after it returns; the manifest is
    # then rewritten with the final summary (cheap: one small JSON).
    manifest = write_dataset(counted(), out, labels, image_size=image_size, source=source,
                             converter_version=f"{summary.kind}/{CONVERTER_VERSION}", extra=extra)
    rejects.write(out)
    manifest.extra["conversion"] = summary.to_dict()
    from classemo.data.format import MANIFEST_NAME, open_filesystem

    fs, base = open_filesystem(out)
    with fs.open_output_stream(f"{base.rstrip('/')}/{MANIFEST_NAME}") as f:
        f.write(manifest.to_json().encode())
    if summary.inputs != summary.converted + summary.rejected:
        raise AssertionError(f"converter bookkeeping is off: {summary.format()}")
    return manifest


def _progress(items: Sequence, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="clip", disable=not enabled)


def _map_labels(
    clips_labels: Sequence[str], labels: LabelSet, label_map: str | os.PathLike | dict | None
) -> dict[str, str | None]:
    mapping = load_label_map(label_map) if isinstance(label_map, (str, os.PathLike)) else label_map
    try:
        return resolve_label_map(clips_labels, labels, mapping)
    except LabelMapError as e:
        raise ConversionError(str(e)) from None


def _read_csv(path: Path, key_columns: Sequence[str], label_column: str | None) -> tuple[list[dict], str, str]:
    """Rows of a labels CSV, plus the names of its key (image/video/clip) column and label column."""
    if not path.is_file():
        raise ConversionError(f"labels CSV {path} not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    key = next((c for c in key_columns if c in columns), None)
    label = label_column or next((c for c in ("label", "emotion", "expression", "class") if c in columns), None)
    if key is None or label is None or label not in columns:
        raise ConversionError(
            f"{path}: needs a {'/'.join(key_columns)} column and a label column "
            f"({label_column or 'label/emotion/expression/class'}); found columns {columns}"
        )
    return rows, key, label


# ----------------------------------------------------------------------------------------------------------------
# (a) labelled image folder


def convert_images(
    src: str | os.PathLike,
    out: str,
    *,
    labels_csv: str | os.PathLike | None = None,
    label_column: str | None = None,
    pattern: str | None = None,
    subject_pattern: str | None = None,
    label_map: str | os.PathLike | dict | None = None,
    labels: LabelSet | None = None,
    image_size: int = 112,
    margin: float = 0.2,
    whole_image_fallback: bool = False,
    min_face_fraction: float = 0.3,
    fps: float = 30.0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    frame_format: str = "png",
    detector: "HaarFaceDetector | None" = None,
    source: str | None = None,
    progress: bool = True,
) -> tuple["Manifest", ConversionSummary]:
    """Convert a labelled image folder.

    Args:
        src: Image folder. Labels come from `labels_csv` (default `<src>/labels.csv` when present; image paths are
            relative to `src` or `src/images`) or else from one sub-folder per class.
        out: Output dataset root (local or s3://).
        labels_csv: CSV with an `image` column and a label column.
        label_column: Label column name (default: label, emotion, expression or class).
        pattern: Filename regex with named groups `subject` and optionally `sequence` and `frame`: images with
            the same subject and sequence become one clip ordered by frame number, its peak the last frame
            (CK+ sequences run from neutral onset to apex). Without it every image is a 1-frame clip.
        subject_pattern: Filename regex with a named group `subject`, for folders of single photos named after
            the person (LFW's `Aaron_Peirsol_0004.jpg`: `'^(?P<subject>.+)_[^_]+$'`). Every image stays a
            1-frame clip, but all of one person's photos land in the same split, so the test split measures
            expressions of people the model has not seen rather than identities it has.
        label_map: YAML path or dict mapping source labels onto `labels`.
        labels: Target label set (default: the paper's).
        image_size: Side of the square face crops.
        margin: Context around the detected face, as a fraction of its side.
        whole_image_fallback: When no face is found, keep the whole image as the crop (for photos that are
            already face-centred crops) instead of rejecting it; counted apart from detected faces.
        min_face_fraction: Smallest face side as a fraction of the image's shorter side, for the default
            detector. Labelled face photos are mostly face; skipping small windows makes detection ~4x faster.
            Lower it for photos with small faces.
        fps: Frame rate recorded for image sequences.
        fractions: train/val/test fractions.
        seed: Split seed.
        frame_format: png (lossless) or jpeg.
        detector: Face detector (default: HaarFaceDetector tuned for face-centred photos).
        source: Source name for the manifest (default: the folder name).
        progress: Show a progress bar.
    """
    from classemo.data.faces import HaarFaceDetector, crop_face, whole_image_box

    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"image folder {src} not found")
    labels = labels or LabelSet.paper()
    summary = ConversionSummary(kind="images", unit="image")
    rejects = _Rejects(summary)
    try:
        regex = re.compile(pattern) if pattern else None
        subject_regex = re.compile(subject_pattern) if subject_pattern else None
    except re.error as e:
        raise ConversionError(f"invalid file-name pattern: {e}") from None
    if regex is not None and "subject" not in regex.groupindex:
        raise ConversionError(f"pattern {pattern!r} needs a named group (?P<subject>...)")
    if subject_pattern and regex is not None:
        raise ConversionError("give --pattern (sequences, with subjects) or --subject-pattern, not both")
    if subject_regex is not None and "subject" not in subject_regex.groupindex:
        raise ConversionError(f"subject pattern {subject_pattern!r} needs a named group (?P<subject>...)")

    # 1. Enumerate input units: (path, source label, where it came from).
    entries: list[tuple[Path, str, str]] = []  # path, source label, clip id
    csv_path = Path(labels_csv) if labels_csv else (src / "labels.csv" if (src / "labels.csv").is_file() else None)
    if csv_path is not None:
        rows, key, label_col = _read_csv(csv_path, ("image", "path", "file", "filename"), label_column)
        for r in rows:
            rel = r[key]
            path = next((p for p in (src / rel, src / "images" / rel, csv_path.parent / rel) if p.is_file()), src / rel)
            entries.append((path, r[label_col], Path(rel).with_suffix("").as_posix()))
    else:
        for class_dir in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
            entries += [(p, class_dir.name, p.relative_to(src).with_suffix("").as_posix())
                        for p in sorted(class_dir.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        if not entries:
            raise ConversionError(f"{src} has no labels.csv and no class sub-folders with files")
    summary.inputs = len(entries)
    mapping = _map_labels([lab for _, lab, _ in entries], labels, label_map)

    # 2. Plan clips; reject what cannot be planned (missing, wrong type, dropped label, duplicate, no match).
    clips: dict[str, _Clip] = {}
    seen: dict[str, str] = {}  # clip id (or, in sequences, file) -> first source label
    for path, raw_label, clip_id in entries:
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            rejects.add(path, "unsupported file type", path.suffix or "no extension")
            continue
        if not path.is_file():
            rejects.add(path, "file not found")
            continue
        target = mapping[raw_label]
        if target is None:
            rejects.add(path, "label dropped by label map", raw_label)
            continue
        unit_id = clip_id if regex is None else str(path)
        if unit_id in seen:
            rejects.add(path, "duplicate id", f"{unit_id!r} again, label {raw_label!r} (first: {seen[unit_id]!r})")
            continue
        seen[unit_id] = raw_label
        if regex is None and subject_regex is not None:
            m = subject_regex.search(path.name)
            if m is None:
                rejects.add(path, "file name does not match subject pattern", subject_pattern)
                continue
            clips[clip_id] = _Clip(clip_id, target, [path], subject_id=m["subject"], group=m["subject"])
            continue
        if regex is None:
            clips[clip_id] = _Clip(clip_id, target, [path], group=clip_id)
            continue
        m = regex.search(path.name)
        if m is None:
            rejects.add(path, "file name does not match pattern", pattern)
            continue
        groups = m.groupdict()
        subject, sequence = groups["subject"], groups.get("sequence") or ""
        clip_id = f"{subject}_{sequence}" if sequence else subject
        clip = clips.setdefault(clip_id, _Clip(clip_id, target, [], subject_id=subject, group=subject))
        frame = groups.get("frame")
        number = int(frame) if frame and frame.isdigit() else len(clip.paths)
        if any(number == n for n, _ in clip.meta.get("frames", [])):
            rejects.add(path, "duplicate id", f"frame {number} of sequence {clip_id} appears twice")
            continue
        clip.meta.setdefault("frames", []).append((number, path))
        clip.paths.append(path)
        clip.meta.setdefault("labels", set()).add(target)
    for clip in list(clips.values()):
        if regex is None:
            continue
        order = sorted(clip.meta.pop("frames"), key=lambda fp: fp[0])
        clip.paths = [p for _, p in order]
        if len(clip.meta["labels"]) > 1:
            for p in clip.paths:
                rejects.add(p, "mixed labels in sequence", f"{clip.clip_id}: {sorted(clip.meta['labels'])}")
            del clips[clip.clip_id]

    planned = list(clips.values())
    summary.split_by = _split_clips(planned, fractions, seed)
    detector = detector or HaarFaceDetector(min_rel_size=min_face_fraction, max_side=128, use_profile=True)

    # 3. Decode, detect, crop and encode, streaming rows into the writer.
    def rows() -> Iterator[dict]:
        for clip in _progress(planned, "images", progress):
            images, bad = [], []
            for p in clip.paths:
                try:
                    images.append(_read_image(p))
                except (OSError, ValueError) as e:
                    bad.append((p, str(e)))
            for p, why in bad:
                rejects.add(p, "unreadable image", why)
            good_paths = [p for p in clip.paths if p not in {b for b, _ in bad}]
            if not images:
                continue
            track = face_track(images, detector)
            fallback = track is None
            if fallback and not whole_image_fallback:
                for p in good_paths:
                    rejects.add(p, "no face found")
                continue
            if fallback:
                track = [whole_image_box(im) for im in images]
                summary.whole_image_fallback += len(images)
            else:
                summary.face_found += len(images)
            summary.converted += len(images)
            frames = [_encode(crop_face(im, box, margin=0.0 if fallback else margin, size=image_size), frame_format)
                      for im, box in zip(images, track)]
            yield {"clip_id": clip.clip_id, "subject_id": clip.subject_id, "source": source or src.name,
                   "split": clip.split, "frames": frames, "fps": fps, "peak_index": len(frames) - 1,
                   "label": clip.label, "label_idx": labels.index(clip.label), **_derived_va(clip.label, labels)}

    extra = {"label_map": mapping, "split_seed": seed, "split_fractions": list(fractions), "input": str(src)}
    manifest = _write(rows(), out, labels, summary, rejects, image_size=image_size, source=source or src.name,
                      extra=extra)
    return manifest, summary


# ----------------------------------------------------------------------------------------------------------------
# (b) video clips + labels CSV


def _sample_video(path: Path, fps: float, max_frames: int | None) -> tuple[list["np.ndarray"], float]:
    """Frames of a video sampled at `fps` (or every frame when the video is slower), and the effective fps."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError("could not open the video")
        native = cap.get(cv2.CAP_PROP_FPS)
        native = native if native and native > 0 else fps
        step = 1.0 / min(fps, native)
        frames, index, next_t = [], 0, 0.0
        while max_frames is None or len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            t = index / native
            if t + 1e-6 >= next_t:
                frames.append(frame)
                next_t += step
            index += 1
    finally:
        cap.release()
    if not frames:
        raise ValueError("no frame could be decoded")
    return frames, min(fps, native)


def convert_videos(
    src: str | os.PathLike,
    out: str,
    *,
    labels_csv: str | os.PathLike | None = None,
    label_column: str | None = None,
    label_map: str | os.PathLike | dict | None = None,
    labels: LabelSet | None = None,
    fps: float = 5.0,
    window: int | None = None,
    max_frames: int | None = 600,
    image_size: int = 112,
    margin: float = 0.2,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    frame_format: str = "png",
    detector: "HaarFaceDetector | None" = None,
    source: str | None = None,
    progress: bool = True,
) -> tuple["Manifest", ConversionSummary]:
    """Convert video clips with a labels CSV (`video,label[,subject]`) into clips of the largest face track.

    Args:
        src: Folder of videos; CSV paths are relative to it.
        out: Output dataset root.
        labels_csv: CSV with a `video` column, a label column and optionally `subject` (default `<src>/labels.csv`).
        fps: Sampling rate; slower videos keep every frame.
        window: Frames per output clip; None writes one clip per video. A tail shorter than half a window is
            dropped (it would be a clip of a different length scale), unless it is the video's only clip.
        max_frames: Cap on sampled frames per video, to bound memory.
        Other arguments as in `convert_images`.
    """
    from classemo.data.faces import HaarFaceDetector, crop_face

    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"video folder {src} not found")
    if window is not None and window < 1:
        raise ConversionError(f"window must be >= 1 frames, got {window}")
    labels = labels or LabelSet.paper()
    summary = ConversionSummary(kind="videos", unit="video")
    rejects = _Rejects(summary)
    csv_path = Path(labels_csv) if labels_csv else src / "labels.csv"
    rows_in, key, label_col = _read_csv(csv_path, ("video", "path", "file", "clip"), label_column)
    summary.inputs = len(rows_in)
    mapping = _map_labels([r[label_col] for r in rows_in], labels, label_map)

    planned: list[_Clip] = []
    seen: dict[str, str] = {}
    for r in rows_in:
        path = src / r[key]
        vid = Path(r[key]).with_suffix("").as_posix()
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            rejects.add(path, "unsupported file type", path.suffix or "no extension")
        elif not path.is_file():
            rejects.add(path, "file not found")
        elif mapping[r[label_col]] is None:
            rejects.add(path, "label dropped by label map", r[label_col])
        elif vid in seen:
            rejects.add(path, "duplicate id", f"video id {vid!r} listed again (first: {seen[vid]})")
        else:
            seen[vid] = r[key]
            subject = r.get("subject") or None
            planned.append(_Clip(vid, mapping[r[label_col]], [path], subject_id=subject, group=subject or vid))
    summary.split_by = _split_clips(planned, fractions, seed)
    if summary.split_by == "clip":
        summary.split_by = "video"  # windows of one video always share a split
    detector = detector or HaarFaceDetector(use_profile=True)

    def rows() -> Iterator[dict]:
        for clip in _progress(planned, "videos", progress):
            path = clip.paths[0]
            try:
                frames, rate = _sample_video(path, fps, max_frames)
            except (OSError, ValueError) as e:
                rejects.add(path, "video could not be decoded", str(e))
                continue
            track = face_track(frames, detector)
            if track is None:
                rejects.add(path, "no face found", f"in {len(frames)} sampled frames")
                continue
            summary.converted += 1
            summary.face_found += 1
            crops = [_encode(crop_face(f, b, margin=margin, size=image_size), frame_format)
                     for f, b in zip(frames, track)]
            size = window or len(crops)
            starts = [s for s in range(0, len(crops), size) if len(crops) - s >= max(1, size // 2) or s == 0]
            for k, s in enumerate(starts):
                part = crops[s : s + size]
                clip_id = clip.clip_id if window is None else f"{clip.clip_id}_w{k:03d}"
                # No apex annotation in video datasets: the middle frame stands in for the peak.
                yield {"clip_id": clip_id, "subject_id": clip.subject_id, "source": source or src.name,
                       "split": clip.split, "frames": part, "fps": rate, "peak_index": len(part) // 2,
                       "label": clip.label, "label_idx": labels.index(clip.label), **_derived_va(clip.label, labels)}

    extra = {"label_map": mapping, "split_seed": seed, "split_fractions": list(fractions), "input": str(src),
             "sample_fps": fps, "window": window}
    manifest = _write(rows(), out, labels, summary, rejects, image_size=image_size, source=source or src.name,
                      extra=extra)
    return manifest, summary


# ----------------------------------------------------------------------------------------------------------------
# (c) AFEW-VA: folder of frames per clip + JSON of per-frame valence/arousal


def _nearest_label(valence: float, arousal: float, labels: LabelSet) -> str:
    def distance(name: str) -> float:
        v, a = labels.default_va[name]
        return (v - valence) ** 2 + (a - arousal) ** 2

    return min(labels.names, key=distance)


def convert_afew_va(
    src: str | os.PathLike,
    out: str,
    *,
    labels_csv: str | os.PathLike | None = None,
    label_column: str | None = None,
    label_map: str | os.PathLike | dict | None = None,
    labels: LabelSet | None = None,
    va_scale: float = 10.0,
    fps: float = 25.0,
    image_size: int = 112,
    margin: float = 0.2,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    frame_format: str = "png",
    detector: "HaarFaceDetector | None" = None,
    source: str | None = None,
    progress: bool = True,
) -> tuple["Manifest", ConversionSummary]:
    """Convert AFEW-VA-shaped data: `<src>/<clip>/<frame>.png` plus `<src>/<clip>/<clip>.json`.

    The JSON holds `{"actor": ..., "frames": {"00000": {"valence": v, "arousal": a, "landmarks": [[x, y], ...]}}}`
    with V/A on [-va_scale, va_scale] (AFEW-VA uses -10..10). Landmarks, when present, give the face box; else
    the Haar face track does. A clip with any unreadable or missing frame is rejected whole, so a clip's frames
    and its per-frame V/A always line up.

    Args:
        labels_csv: Optional `clip,label` CSV. Without it a clip's label is the label whose default V/A lies
            nearest to the clip's mean V/A (AFEW-VA itself has no discrete labels).
        va_scale: Divisor that brings the JSON's V/A into [-1, 1].
        Other arguments as in `convert_images`.
    """
    import numpy as np

    from classemo.data.faces import FaceBox, HaarFaceDetector, crop_face

    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"AFEW-VA folder {src} not found")
    labels = labels or LabelSet.paper()
    summary = ConversionSummary(kind="afew-va", unit="clip")
    rejects = _Rejects(summary)
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    summary.inputs = len(folders)
    given: dict[str, str] = {}
    if labels_csv:
        rows_in, key, label_col = _read_csv(Path(labels_csv), ("clip", "clip_id", "video"), label_column)
        given = {r[key]: r[label_col] for r in rows_in}
    mapping = _map_labels(list(given.values()), labels, label_map) if given else {}

    planned: list[_Clip] = []
    for folder in folders:
        jsons = sorted(folder.glob("*.json"))
        if not jsons:
            rejects.add(folder, "no annotation JSON")
            continue
        try:
            ann = json.loads(jsons[0].read_text())
            frames_ann = ann["frames"]
            names = sorted(frames_ann)
            va = [(float(frames_ann[n]["valence"]) / va_scale, float(frames_ann[n]["arousal"]) / va_scale)
                  for n in names]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            rejects.add(jsons[0], "bad annotation JSON", f"{type(e).__name__}: {e}")
            continue
        if not names:
            rejects.add(folder, "bad annotation JSON", "no frames")
            continue
        if any(not (-1.0 <= v <= 1.0 and -1.0 <= a <= 1.0) for v, a in va):
            rejects.add(jsons[0], "bad annotation JSON", f"V/A outside [-{va_scale}, {va_scale}]")
            continue
        if given:
            if folder.name not in given:
                rejects.add(folder, "no label in labels CSV")
                continue
            label = mapping[given[folder.name]]
            if label is None:
                rejects.add(folder, "label dropped by label map", given[folder.name])
                continue
        else:
            label = _nearest_label(float(np.mean([v for v, _ in va])), float(np.mean([a for _, a in va])), labels)
        subject = str(ann["actor"]) if ann.get("actor") else None
        paths = []
        for n in names:
            hits = [p for p in folder.glob(f"{n}.*") if p.suffix.lower() in IMAGE_EXTENSIONS]
            paths.append(hits[0] if hits else folder / f"{n}.png")
        landmarks = [frames_ann[n].get("landmarks") for n in names]
        planned.append(_Clip(folder.name, label, paths, subject_id=subject, group=subject or folder.name,
                             meta={"va": va, "landmarks": landmarks}))
    summary.split_by = _split_clips(planned, fractions, seed)
    detector = detector or HaarFaceDetector(use_profile=True)

    def rows() -> Iterator[dict]:
        for clip in _progress(planned, "afew-va", progress):
            images = []
            for p in clip.paths:
                try:
                    images.append(_read_image(p))
                except (OSError, ValueError) as e:
                    rejects.add(clip.paths[0].parent, "unreadable frame", f"{p.name}: {e}")
                    break
            else:
                marks = clip.meta["landmarks"]
                if all(m for m in marks):
                    pts = [np.asarray(m, dtype=float).reshape(-1, 2) for m in marks]
                    track = [FaceBox(int(q[:, 0].min()), int(q[:, 1].min()), max(1, int(np.ptp(q[:, 0]))),
                                     max(1, int(np.ptp(q[:, 1])))) for q in pts]
                else:
                    track = face_track(images, detector)
                if track is None:
                    rejects.add(clip.paths[0].parent, "no face found", f"in {len(images)} frames")
                    continue
                summary.converted += 1
                summary.face_found += 1
                frames = [_encode(crop_face(im, b, margin=margin, size=image_size), frame_format)
                          for im, b in zip(images, track)]
                fv = [v for v, _ in clip.meta["va"]]
                fa = [a for _, a in clip.meta["va"]]
                # The apex is the frame furthest from neutral in the V/A plane.
                peak = int(np.argmax(np.hypot(fv, fa)))
                yield {"clip_id": clip.clip_id, "subject_id": clip.subject_id, "source": source or src.name,
                       "split": clip.split, "frames": frames, "fps": fps, "peak_index": peak, "label": clip.label,
                       "label_idx": labels.index(clip.label), "valence": float(np.mean(fv)),
                       "arousal": float(np.mean(fa)), "frame_valence": fv, "frame_arousal": fa,
                       "va_source": "annotated"}

    extra = {"label_map": mapping, "label_source": "labels_csv" if given else "nearest default V/A",
             "split_seed": seed, "split_fractions": list(fractions), "input": str(src), "va_scale": va_scale}
    manifest = _write(rows(), out, labels, summary, rejects, image_size=image_size, source=source or src.name,
                      extra=extra)
    return manifest, summary


# ----------------------------------------------------------------------------------------------------------------
# CLI: `classemo data convert images|videos|afew-va` and `classemo data info`

convert_app = typer.Typer(help="Convert a labelled image folder, videos or AFEW-VA data into the dataset format.",
                          no_args_is_help=True)

_LabelMapOpt = typer.Option(None, "--label-map", help="YAML mapping source labels onto the label set (null drops).")
_LabelsOpt = typer.Option(None, "--labels", help="Comma-separated custom label set (default: the paper's 7).")
_SplitOpt = typer.Option("0.8,0.1,0.1", "--split", help="train,val,test fractions.")


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--split needs three comma-separated numbers, got {text!r}") from None
    if len(parts) != 3:
        raise typer.BadParameter(f"--split needs three comma-separated numbers, got {text!r}")
    return parts  # type: ignore[return-value]


def _run(fn: Callable[[], tuple["Manifest", ConversionSummary]], out: str) -> None:
    from classemo.data.format import DatasetFormatError

    try:
        _, summary = fn()
    except (ConversionError, LabelMapError, DatasetFormatError, ValueError) as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(summary.format())
    typer.echo(f"wrote {out} (rejected inputs listed in {out.rstrip('/')}/rejected.csv)")


@convert_app.command("images")
def convert_images_cmd(
    src: Path = typer.Argument(..., help="Image folder: labels.csv (image,label) or one sub-folder per class."),
    out: str = typer.Argument(..., help="Output dataset root (local path or s3://bucket/prefix)."),
    labels_csv: Path | None = typer.Option(None, "--labels-csv", help="Labels CSV (default: <src>/labels.csv)."),
    label_column: str | None = typer.Option(None, "--label-column", help="Label column name in the CSV."),
    pattern: str | None = typer.Option(
        None, "--pattern", help="Filename regex with (?P<subject>)(?P<sequence>)(?P<frame>) groups, e.g. "
        "'S(?P<subject>\\d+)_(?P<sequence>\\d+)_(?P<frame>\\d+)' for CK+ S005_001_00000011.png."),
    subject_pattern: str | None = typer.Option(
        None, "--subject-pattern", help="Filename regex with a (?P<subject>) group for photos named after the "
        "person, e.g. '^(?P<subject>.+)_[^_]+$' for Aaron_Peirsol_0004.jpg: one person's photos share a split."),
    label_map: Path | None = _LabelMapOpt,
    labels: str | None = _LabelsOpt,
    image_size: int = typer.Option(112, help="Side of the square face crops."),
    margin: float = typer.Option(0.2, help="Context around the face, as a fraction of its side."),
    whole_image_fallback: bool = typer.Option(False, "--whole-image-fallback/--no-whole-image-fallback",
                                              help="Keep the whole image when no face is found (face-centred photos)."),
    min_face_fraction: float = typer.Option(0.3, help="Smallest face side as a fraction of the image's shorter side."),
    fps: float = typer.Option(30.0, help="Frame rate recorded for image sequences."),
    split: str = _SplitOpt,
    seed: int = typer.Option(0, help="Split seed."),
    frame_format: str = typer.Option("png", help="png or jpeg."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Convert a labelled image folder (faces detected with OpenCV's Haar cascades, cropped and resized)."""
    _run(lambda: convert_images(src, out, labels_csv=labels_csv, label_column=label_column, pattern=pattern,
                                subject_pattern=subject_pattern,
                                label_map=label_map, labels=parse_label_set(labels), image_size=image_size,
                                margin=margin, whole_image_fallback=whole_image_fallback,
                                min_face_fraction=min_face_fraction, fps=fps,
                                fractions=_fractions(split), seed=seed, frame_format=frame_format,
                                progress=progress), out)


@convert_app.command("videos")
def convert_videos_cmd(
    src: Path = typer.Argument(..., help="Folder of videos."),
    out: str = typer.Argument(..., help="Output dataset root (local path or s3://bucket/prefix)."),
    labels_csv: Path | None = typer.Option(None, "--labels-csv", help="CSV video,label[,subject] "
                                           "(default: <src>/labels.csv)."),
    label_column: str | None = typer.Option(None, "--label-column"),
    label_map: Path | None = _LabelMapOpt,
    labels: str | None = _LabelsOpt,
    fps: float = typer.Option(5.0, help="Sampling rate in frames per second."),
    window: int | None = typer.Option(None, help="Frames per clip (default: one clip per video)."),
    max_frames: int = typer.Option(600, help="Cap on sampled frames per video."),
    image_size: int = typer.Option(112),
    margin: float = typer.Option(0.2),
    split: str = _SplitOpt,
    seed: int = typer.Option(0),
    frame_format: str = typer.Option("png"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Convert labelled videos into clips of the largest face track."""
    _run(lambda: convert_videos(src, out, labels_csv=labels_csv, label_column=label_column, label_map=label_map,
                                labels=parse_label_set(labels), fps=fps, window=window, max_frames=max_frames,
                                image_size=image_size, margin=margin, fractions=_fractions(split), seed=seed,
                                frame_format=frame_format, progress=progress), out)


@convert_app.command("afew-va")
def convert_afew_va_cmd(
    src: Path = typer.Argument(..., help="Folder with one sub-folder of frames + JSON per clip."),
    out: str = typer.Argument(..., help="Output dataset root (local path or s3://bucket/prefix)."),
    labels_csv: Path | None = typer.Option(None, "--labels-csv", help="Optional clip,label CSV; without it the "
                                           "label nearest the clip's mean V/A is used."),
    label_column: str | None = typer.Option(None, "--label-column"),
    label_map: Path | None = _LabelMapOpt,
    labels: str | None = _LabelsOpt,
    va_scale: float = typer.Option(10.0, help="The JSON's V/A range is [-va_scale, va_scale]."),
    fps: float = typer.Option(25.0, help="Frame rate of the frame folders."),
    image_size: int = typer.Option(112),
    margin: float = typer.Option(0.2),
    split: str = _SplitOpt,
    seed: int = typer.Option(0),
    frame_format: str = typer.Option("png"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Convert AFEW-VA-shaped data (per-frame valence/arousal)."""
    _run(lambda: convert_afew_va(src, out, labels_csv=labels_csv, label_column=label_column, label_map=label_map,
                                 labels=parse_label_set(labels), va_scale=va_scale, fps=fps, image_size=image_size,
                                 margin=margin, fractions=_fractions(split), seed=seed, frame_format=frame_format,
                                 progress=progress), out)


def format_manifest(manifest: "Manifest", root: str) -> str:
    """Human-readable summary of a manifest: labels, counts per split and label, image size."""
    names = [d["name"] for d in manifest.labels]
    width = max(8, *(len(n) for n in names))
    lines = [
        f"dataset {root}",
        f"  source: {manifest.source}, converter: {manifest.converter_version}, format v{manifest.format_version}",
        f"  image size: {manifest.image_size}x{manifest.image_size}, clips: {manifest.num_clips}, "
        f"frames: {sum(manifest.frame_counts.values())}",
        "  labels: " + ", ".join(f"{d['name']} ({d['polarity']})" for d in manifest.labels),
        "  " + "label".ljust(width) + "".join(s.rjust(8) for s in manifest.counts),
    ]
    for n in names:
        lines.append("  " + n.ljust(width) + "".join(str(manifest.label_counts.get(s, {}).get(n, 0)).rjust(8)
                                                        for s in manifest.counts))
    lines.append("  " + "total".ljust(width) + "".join(str(c).rjust(8) for c in manifest.counts.values()))
    conv = manifest.extra.get("conversion")
    if conv:
        lines.append(f"  conversion: {conv['inputs']} {conv['unit']}s in = {conv['converted']} converted + "
                     f"{conv['rejected']} rejected (face found {conv['face_found']}, whole-image fallback "
                     f"{conv['whole_image_fallback']})")
    return "\n".join(lines)


def info_cmd(root: str = typer.Argument(..., help="Dataset root (local path or s3://bucket/prefix).")) -> None:
    """Print a dataset's manifest summary: labels, counts per split and label, image size."""
    from classemo.data.format import DatasetFormatError, read_manifest

    try:
        manifest = read_manifest(root)
    except DatasetFormatError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(format_manifest(manifest, root))
