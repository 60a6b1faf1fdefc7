"""(c) AFEW-VA shape: a folder of frames per clip plus a JSON of per-frame valence/arousal."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from classemo.data.convert import (DEFAULT_FRACTIONS, IMAGE_EXTENSIONS, ConversionError, ConversionSummary, PlannedClip,
                                   Rejects, convert_clips, converter_face_path, face_track, map_labels, read_image,
                                   read_labels_csv, split_clips)
from classemo.labels import LabelSet

if TYPE_CHECKING:
    import numpy as np

    from classemo.data.format import Manifest
    from classemo.faces import FacePath


def five_points(points: "np.ndarray") -> tuple[tuple[float, float], ...] | None:
    """YuNet's five landmarks (right eye, left eye, nose tip, right and left mouth corner) from the 68-point iBUG
    layout that AFEW-VA uses; None for any other layout (the box crop is used then)."""
    if len(points) != 68:
        return None
    five = [points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]]
    return tuple((float(x), float(y)) for x, y in five)


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
    detector: str = "yunet",
    align: bool = True,
    yunet_model: str | os.PathLike | None = None,
    faces: "FacePath | None" = None,
    source: str | None = None,
    progress: bool = True,
) -> tuple["Manifest", ConversionSummary]:
    """Convert AFEW-VA-shaped data: `<src>/<clip>/<frame>.png` plus `<src>/<clip>/<clip>.json`.

    The JSON holds `{"actor": ..., "frames": {"00000": {"valence": v, "arousal": a, "landmarks": [[x, y], ...]}}}`
    with V/A on [-va_scale, va_scale] (AFEW-VA uses -10..10). Landmarks, when present, give the face box (and, for
    68-point landmarks, the five points that aligned crops use); else the detector's face track does. A clip with
    any unreadable or missing frame is rejected whole, so a clip's frames
    and its per-frame V/A always line up.

    Args:
        labels_csv: Optional `clip,label` CSV. Without it a clip's label is the label whose default V/A lies
            nearest to the clip's mean V/A (AFEW-VA itself has no discrete labels).
        va_scale: Divisor that brings the JSON's V/A into [-1, 1].
        Other arguments as in `convert_images`.
    """
    import numpy as np

    from classemo.faces import FaceBox

    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"AFEW-VA folder {src} not found")
    labels = labels or LabelSet.paper()
    summary = ConversionSummary(kind="afew-va", unit="clip")
    rejects = Rejects(summary)
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    summary.inputs = len(folders)
    given: dict[str, str] = {}
    if labels_csv:
        rows_in, key, label_col = read_labels_csv(Path(labels_csv), ("clip", "clip_id", "video"), label_column)
        given = {r[key]: r[label_col] for r in rows_in}
    mapping = map_labels(list(given.values()), labels, label_map) if given else {}

    planned: list[PlannedClip] = []
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
        planned.append(PlannedClip(folder.name, label, paths, subject_id=subject, group=subject or folder.name,
                                   meta={"va": va, "landmarks": landmarks}))
    summary.split_by = split_clips(planned, fractions, seed)
    faces = faces or converter_face_path(detector, align, margin, image_size, yunet_model)

    def load(clip: PlannedClip) -> list["np.ndarray"] | None:
        images = []
        for p in clip.paths:
            try:
                images.append(read_image(p))
            except (OSError, ValueError) as e:
                rejects.add(clip.paths[0].parent, "unreadable frame", f"{p.name}: {e}")
                return None  # a clip with a bad frame is rejected whole: its frames and V/A must line up
        return images

    def track(clip: PlannedClip, images: list["np.ndarray"]) -> list[FaceBox] | None:
        marks = clip.meta["landmarks"]
        if not all(m for m in marks):
            return face_track(images, faces)
        pts = [np.asarray(m, dtype=float).reshape(-1, 2) for m in marks]
        return [FaceBox(int(q[:, 0].min()), int(q[:, 1].min()), max(1, int(np.ptp(q[:, 0]))),
                        max(1, int(np.ptp(q[:, 1]))), landmarks=five_points(q)) for q in pts]

    def no_face(clip: PlannedClip, n: int) -> None:
        rejects.add(clip.paths[0].parent, "no face found", f"in {n} frames")

    def emit(clip: PlannedClip, frames: list[bytes]) -> Iterator[dict]:
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
    manifest = convert_clips(planned, out, labels, summary, rejects, faces, load=load, emit=emit, no_face=no_face,
                             track=track, desc="afew-va", progress=progress, image_size=image_size,
                             frame_format=frame_format, source=source or src.name, extra=extra)
    return manifest, summary
