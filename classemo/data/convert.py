"""Shared pieces of the dataset converters (`classemo data convert ...`, whose commands live in `classemo.cli`).

One module per input shape, each built on what is here:

- `convert_images`: a labelled image folder (a CSV `image,label` or one folder per class), optionally grouped into
  sequences by a filename regex with named groups `subject`, `sequence` and `frame` (CK+ style), or split by a
  subject named in the file name;
- `convert_videos`: video clips plus a labels CSV (DAiSEE/DFEW style): frames sampled at a chosen fps, the largest
  face track cropped, one clip per video or per window of N frames;
- `convert_afew_va`: one folder of frames per clip plus a JSON of per-frame valence/arousal;
- `convert_ferplus`: FER+ (48x48 FER2013 faces with ten crowd votes each): soft labels, duplicates dropped;
- `classemo.video.convert_classroom`: annotated classroom videos, cut by the analysis pipeline's own detector
  (it lives with the video pipeline it reuses, which sits above `data`).

Every converter runs through one `classemo.data.conversion.Conversion`: the options they share, and the loop that
cuts, encodes and writes. Every input unit (an image, a video, a clip folder) is either converted or listed in
`<out>/rejected.csv` with the reason, so `inputs = converted + rejected` always holds. One bad file never stops a run.
"""

from __future__ import annotations

import csv
import io
import os
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classemo.data.label_map import LabelMapError, load_label_map, resolve_label_map
from classemo.labels import LabelSet

if TYPE_CHECKING:
    import numpy as np

    from classemo.data.format import Manifest
    from classemo.faces import FaceBox, FacePath

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


class Rejects:
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
class PlannedClip:
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


def split_clips(clips: list[PlannedClip], fractions: Sequence[float], seed: int) -> str:
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


def read_image(path: Path) -> "np.ndarray":
    """Decode an image file to BGR through the shared decode (EXIF orientation applied), refusing truncated JPEGs
    (OpenCV would pad them with grey silently)."""
    from classemo.preprocessing import ImageDecodeError, decode_image_bgr

    data = path.read_bytes()
    if not data:
        raise ValueError("empty file")
    # Some writers leave padding after the end-of-image marker; only its total absence means truncation.
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-1024:]:
        raise ValueError("truncated JPEG (no end-of-image marker)")
    try:
        return decode_image_bgr(data)
    except ImageDecodeError:
        raise ValueError("not a decodable image") from None


def encode_frame(image: "np.ndarray", frame_format: str) -> bytes:
    import cv2

    ext, params = (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]) if frame_format == "png" else (
        ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode a {frame_format} frame")
    return buf.tobytes()


def face_track(
    frames: Sequence["np.ndarray"], faces: "FacePath", *, min_iou: float = 0.2
) -> list["FaceBox"] | None:
    """The largest face's track through a sequence: one box per frame, or None when no frame has a face.

    The track starts at the frame holding the largest detection overall and extends both ways, taking in each
    frame the detection that overlaps the previous box most (at least `min_iou`); a frame without one keeps the
    previous box, since faces in a clip move little between sampled frames.
    """
    detections = [faces.detect(f) for f in frames]
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


def derived_va(label: str, labels: LabelSet) -> dict[str, Any]:
    valence, arousal = labels.default_va[label]
    return {"valence": valence, "arousal": arousal, "frame_valence": None, "frame_arousal": None,
            "va_source": "derived"}


def map_labels(
    clips_labels: Sequence[str], labels: LabelSet, label_map: str | os.PathLike | dict | None
) -> dict[str, str | None]:
    mapping = load_label_map(label_map) if isinstance(label_map, (str, os.PathLike)) else label_map
    try:
        return resolve_label_map(clips_labels, labels, mapping)
    except LabelMapError as e:
        raise ConversionError(str(e)) from None


def read_labels_csv(path: Path, key_columns: Sequence[str], label_column: str | None) -> tuple[list[dict], str, str]:
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
# What the converters' options become, and what `classemo data info` prints


def converter_face_path(detector: str, align: bool, margin: float, size: int,
                        yunet_model: "os.PathLike | str | None" = None, *, tuned_haar: bool = True,
                        **haar_kwargs: Any) -> "FacePath":
    """The converters' face path from their options.

    Haar with alignment left on means no alignment, since a user who picks Haar asks for the old boxes; the converters'
    Haar is `HaarFaceDetector` with the profile cascade and a padded second pass, tuned for face-centred photos and
    clips (`haar_kwargs` tune it further). `tuned_haar=False` keeps the Haar detector `classemo analyze` builds from
    the same settings, for a converter that must cut faces as the analysis will (classroom videos).

    Raises:
        ConversionError: for an unknown detector, invalid margin or size, or a YuNet file that does not load.
    """
    from classemo.faces import FacePath, FaceSettings
    from classemo.faces.haar import HaarFaceDetector

    try:
        face = FaceSettings(detector=detector, align=align and detector == "yunet", margin=margin, size=size,
                            model_path=str(yunet_model) if yunet_model else None)
        haar = HaarFaceDetector(use_profile=True, **haar_kwargs) if tuned_haar and face.detector != "yunet" else None
        return FacePath(face, detector=haar)
    except (ValueError, FileNotFoundError) as e:
        raise ConversionError(str(e)) from None


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
