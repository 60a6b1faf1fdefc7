"""Annotated classroom videos -> training clips cut the way `classemo analyze` sees faces.

Each video has an annotation JSON beside it (same stem) holding, per person, a face box and an expression label
per video frame, and optionally valence/arousal and a visible flag: the format `classemo data synth-classroom`
writes as its ground truth, and what an annotation tool's per-person tracks export to (docs/data-format.md).

The faces are not cropped from the annotated boxes. Each sampled frame goes through the video pipeline's own face
detector, and an annotated person takes the detection that overlaps their box most (IoU >= `min_iou`); the crop
is the face path's (`classemo.faces.FacePath`: aligned on YuNet's landmarks by default), with the pipeline's margin.
So the training clips have the scale, jitter and misses that inference will have, which is what a model meant for
`classemo analyze` must learn from. A person's matched frames are then cut into windows of `window` consecutive
detections, as `classemo.video.windows.WindowBuffer` cuts a track, labelled at the window's centre frame (where the
timeline reports a window).
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classemo.data.conversion import Conversion, SplitOptions
from classemo.data.convert import VIDEO_EXTENSIONS, ConversionError, ConversionSummary, PlannedClip, encode_frame
from classemo.labels import LabelSet

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from classemo.data.format import Manifest

log = logging.getLogger(__name__)


def read_annotation(path: Path, labels: LabelSet) -> list[dict]:
    """The people of one annotation JSON, checked: per-frame `boxes` and `labels` of equal length.

    Returns:
        One dict per person: id, subject_id, role, boxes (list of [x, y, w, h] or None), labels, valence,
        arousal (lists or None) and visible (list of bool).

    Raises:
        ValueError: naming the person and the field that is missing or malformed.
    """
    ann = json.loads(path.read_text())
    people = ann.get("people") if isinstance(ann, dict) else None
    if not isinstance(people, list) or not people:
        raise ValueError("no 'people' list")
    out = []
    for k, p in enumerate(people):
        pid = str(p.get("id", k))
        boxes, frame_labels = p.get("boxes"), p.get("labels")
        if not isinstance(boxes, list) or not isinstance(frame_labels, list) or len(boxes) != len(frame_labels):
            raise ValueError(f"person {pid!r}: needs per-frame 'boxes' and 'labels' lists of equal length")
        unknown = sorted({lab for lab in frame_labels if lab is not None and lab not in labels.names})
        if unknown:
            raise ValueError(f"person {pid!r}: labels {unknown} are not in the label set {list(labels.names)}")
        n = len(boxes)
        va = {}
        for key in ("valence", "arousal"):
            seq = p.get(key)
            if seq is not None and (len(seq) != n or any(not -1.0 <= float(v) <= 1.0 for v in seq)):
                raise ValueError(f"person {pid!r}: '{key}' must have {n} values in [-1, 1]")
            va[key] = seq
        visible = p.get("visible") or [True] * n
        if len(visible) != n:
            raise ValueError(f"person {pid!r}: 'visible' must have {n} values")
        out.append({"id": pid, "subject_id": str(p.get("subject_id") or pid), "role": p.get("role"),
                    "boxes": boxes, "labels": frame_labels, "visible": visible, **va})
    return out


def match_detections(truth_boxes: np.ndarray, detections: np.ndarray, min_iou: float) -> list[int | None]:
    """Greedy one-to-one matching by IoU: for each annotated box (G, 4), the index of its detection (N, 4) or None."""
    from classemo.video.track import iou_matrix

    out: list[int | None] = [None] * len(truth_boxes)
    if not len(truth_boxes) or not len(detections):
        return out
    iou = iou_matrix(truth_boxes, detections)  # (G, N)
    for flat in np.argsort(-iou, axis=None):
        g, d = divmod(int(flat), iou.shape[1])
        if iou[g, d] < min_iou:
            break
        if out[g] is None and d not in out:
            out[g] = d
    return out


def convert_classroom(
    src: str | os.PathLike,
    out: str,
    *,
    fps: float = 5.0,
    window: int = 4,
    stride: int = 2,
    min_iou: float = 0.3,
    **options: Unpack[SplitOptions],
) -> tuple["Manifest", ConversionSummary]:
    """Convert a folder of annotated classroom videos (`<name>.mp4` + `<name>.json`) into windowed face clips.

    Args:
        src: Folder of videos, each with its annotation JSON beside it.
        out: Output dataset root (local path or s3://bucket/prefix).
        fps: Sampling rate, as `classemo analyze --fps`.
        window: Frames per clip: the model's `num_frames`.
        stride: Detections between window starts (`analyze` uses half a window; smaller gives more clips).
        min_iou: Overlap a detection needs with a person's annotated box to be that person's face.
        **options: `SplitOptions`. Here `labels` is the set the annotation's labels belong to, `image_size` defaults
            to 48, `margin` is `analyze --crop-margin`, people are split by subject_id (or by person within a video),
            and the detector is the one analysis will use, Haar included (`classemo analyze` takes the model's face
            settings, which training copies from this dataset's manifest).

    Raises:
        ConversionError: a missing folder, no videos, or invalid settings.
    """
    import cv2

    from classemo.video.decode import FrameStream, VideoError

    run = Conversion("classroom", "video", src, out, options, accepts=SplitOptions, what="video folder", image_size=48)
    src, labels, rejects = run.src, run.labels, run.rejects
    if window < 1 or not 1 <= stride <= window:
        raise ConversionError(f"need window >= 1 and 1 <= stride <= window, got window={window}, stride={stride}")
    if not 0 < min_iou <= 1:
        raise ConversionError(f"min_iou must be in (0, 1], got {min_iou}")
    videos = sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))
    if not videos:
        raise ConversionError(f"no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) in {src}")
    run.summary.inputs = len(videos)
    faces = run.face_path(tuned_haar=False)

    # Splits are planned from the annotations alone (one planned "clip" per person), before any frame is decoded.
    planned: list[PlannedClip] = []
    for video in videos:
        ann_path = video.with_suffix(".json")
        if not ann_path.is_file():
            rejects.add(video, "no annotation JSON", f"expected {ann_path.name} beside the video")
            continue
        try:
            people = read_annotation(ann_path, labels)
        except (OSError, ValueError, TypeError, AttributeError) as e:
            rejects.add(ann_path, "bad annotation JSON", f"{type(e).__name__}: {e}")
            continue
        for p in people:
            main = max(set(p["labels"]) - {None}, key=p["labels"].count, default="neutral")
            planned.append(PlannedClip(f"{video.stem}/{p['id']}", main, [video], subject_id=p["subject_id"],
                                       group=p["subject_id"], meta={"person": p}))
    run.split(planned)
    by_video: dict[Path, list[PlannedClip]] = {}
    for clip in planned:
        by_video.setdefault(clip.paths[0], []).append(clip)

    def window_row(clip: PlannedClip, part: list[tuple[int, bytes]], rate: float) -> dict:
        p = clip.meta["person"]
        centre = len(part) // 2
        idx = [i for i, _ in part]
        label = p["labels"][idx[centre]] or "neutral"
        va = {}  # none annotated: derived from the label
        if p.get("valence") is not None and p.get("arousal") is not None:
            fv = [float(p["valence"][i]) for i in idx]
            fa = [float(p["arousal"][i]) for i in idx]
            va = {"valence": fv[centre], "arousal": fa[centre], "frame_valence": fv, "frame_arousal": fa,
                  "va_source": "annotated"}
        # The id names the window's first and last video frame, so a clip can be traced back to the video.
        return run.row(clip, [c for _, c in part], fps=rate, peak_index=centre, label=label,
                       clip_id=f"{clip.clip_id}/f{idx[0]:06d}-{idx[-1]:06d}", **va)

    def rows(video: Path) -> Iterator[dict]:
        clips = by_video[video]
        # Per person, the last `window` matched crops and how many there were: windows are emitted as soon as
        # they are full, so memory holds one window per person however long the lesson is.
        recent = {c.clip_id: deque(maxlen=window) for c in clips}
        count = {c.clip_id: 0 for c in clips}
        emitted = 0
        try:
            stream = FrameStream(video, fps=fps)
            rate = min(fps, stream.info.fps or fps)
            for index, _, frame in stream:
                found = faces.detect(frame)
                boxes = np.array([[b.x, b.y, b.w, b.h] for b in found], float).reshape(-1, 4)
                present = [c for c in clips if index < len(c.meta["person"]["boxes"])
                           and c.meta["person"]["visible"][index] and c.meta["person"]["boxes"][index]]
                truth = np.array([c.meta["person"]["boxes"][index] for c in present], float).reshape(-1, 4)
                for c, d in zip(present, match_detections(truth, boxes, min_iou)):
                    if d is None:
                        continue
                    crop, _ = faces.crop(frame, found[d])
                    recent[c.clip_id].append((index, encode_frame(crop, run.options["frame_format"])))
                    count[c.clip_id] += 1
                    n = count[c.clip_id]
                    if n >= window and (n - window) % stride == 0:
                        emitted += 1
                        yield window_row(c, list(recent[c.clip_id]), rate)
        except (VideoError, OSError, ValueError, cv2.error) as e:
            if not emitted:
                rejects.add(video, "video could not be decoded", str(e))
                return
            log.warning("%s: stopped after %d clips: %s", video, emitted, e)
        # The tail: a person seen fewer than `window` times gets one short window, and detections after the last
        # full window get a final window ending at the person's last detection (as the analysis does).
        for c in clips:
            n = count[c.clip_id]
            if n and (n < window or (n - window) % stride):
                emitted += 1
                yield window_row(c, list(recent[c.clip_id]), rate)
        if not emitted:
            rejects.add(video, "no annotated face was detected", f"{len(clips)} people annotated")
            return
        run.summary.converted += 1
        run.summary.face_found += 1

    extra: dict[str, Any] = {**run.split_record, "sample_fps": fps, "window": window, "stride": stride,
                             "margin": run.options["margin"], "min_iou": min_iou,
                             "detector": type(faces.detector).__name__}
    return run.write(list(by_video), rows, desc="videos", extra=extra), run.summary
