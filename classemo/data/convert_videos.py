"""(b) Video clips plus a labels CSV (DAiSEE/DFEW shape) -> clips of the largest face track."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from classemo.data.conversion import Conversion
from classemo.data.convert import (VIDEO_EXTENSIONS, ConversionError, ConversionSummary, PlannedClip, map_labels,
                                   read_labels_csv)

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Unpack

    from classemo.data.conversion import LabelledOptions
    from classemo.data.format import Manifest


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
    fps: float = 5.0,
    window: int | None = None,
    max_frames: int | None = 600,
    **options: Unpack[LabelledOptions],
) -> tuple["Manifest", ConversionSummary]:
    """Convert video clips with a labels CSV (`video,label[,subject]`) into clips of the largest face track.

    Args:
        src: Folder of videos; CSV paths are relative to it. The `labels_csv` option (default `<src>/labels.csv`)
            has a `video` column, a label column and optionally `subject`.
        out: Output dataset root.
        fps: Sampling rate; slower videos keep every frame.
        window: Frames per output clip; None writes one clip per video. A tail shorter than half a window is
            dropped (it would be a clip of a different length scale), unless it is the video's only clip.
        max_frames: Cap on sampled frames per video, to bound memory.
        **options: `LabelledOptions`: labels CSV and map, label set, crop, face detector, split, progress.
    """
    run = Conversion("videos", "video", src, out, options, what="video folder")
    src, rejects = run.src, run.rejects
    if window is not None and window < 1:
        raise ConversionError(f"window must be >= 1 frames, got {window}")
    labels_csv = run.options["labels_csv"]
    csv_path = Path(labels_csv) if labels_csv else src / "labels.csv"
    rows_in, key, label_col = read_labels_csv(csv_path, ("video", "path", "file", "clip"), run.options["label_column"])
    run.summary.inputs = len(rows_in)
    mapping = map_labels([r[label_col] for r in rows_in], run.labels, run.options["label_map"])

    planned: list[PlannedClip] = []
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
            planned.append(PlannedClip(vid, mapping[r[label_col]], [path], subject_id=subject, group=subject or vid))
    if run.split(planned) == "clip":
        run.summary.split_by = "video"  # windows of one video always share a split
    run.face_path()

    rates: dict[str, float] = {}

    def load(clip: PlannedClip) -> list["np.ndarray"] | None:
        try:
            frames, rates[clip.clip_id] = _sample_video(clip.paths[0], fps, max_frames)
        except (OSError, ValueError) as e:
            rejects.add(clip.paths[0], "video could not be decoded", str(e))
            return None
        return frames

    def no_face(clip: PlannedClip, n: int) -> None:
        rejects.add(clip.paths[0], "no face found", f"in {n} sampled frames")

    def emit(clip: PlannedClip, crops: list[bytes]) -> Iterator[dict]:
        size = window or len(crops)
        starts = [s for s in range(0, len(crops), size) if len(crops) - s >= max(1, size // 2) or s == 0]
        for k, s in enumerate(starts):
            part = crops[s : s + size]
            clip_id = clip.clip_id if window is None else f"{clip.clip_id}_w{k:03d}"
            # No apex annotation in video datasets: the middle frame stands in for the peak.
            yield run.row(clip, part, fps=rates[clip.clip_id], peak_index=len(part) // 2, clip_id=clip_id)

    extra = {"label_map": mapping, **run.split_record, "sample_fps": fps, "window": window}
    manifest = run.convert(planned, load=load, emit=emit, no_face=no_face, desc="videos", extra=extra)
    return manifest, run.summary
