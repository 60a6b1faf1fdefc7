"""(c) AFEW-VA shape: a folder of frames per clip plus a JSON of per-frame valence/arousal."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from classemo.data.conversion import Conversion
from classemo.data.convert import (IMAGE_EXTENSIONS, ConversionSummary, PlannedClip, face_track, map_labels, read_image,
                                   read_labels_csv)
from classemo.labels import LabelSet

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Unpack

    from classemo.data.conversion import LabelledOptions
    from classemo.data.format import Manifest


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
    va_scale: float = 10.0,
    fps: float = 25.0,
    **options: Unpack[LabelledOptions],
) -> tuple["Manifest", ConversionSummary]:
    """Convert AFEW-VA-shaped data: `<src>/<clip>/<frame>.png` plus `<src>/<clip>/<clip>.json`.

    The JSON holds `{"actor": ..., "frames": {"00000": {"valence": v, "arousal": a, "landmarks": [[x, y], ...]}}}`
    with V/A on [-va_scale, va_scale] (AFEW-VA uses -10..10). Landmarks, when present, give the face box (and, for
    68-point landmarks, the five points that aligned crops use); else the detector's face track does. A clip with
    any unreadable or missing frame is rejected whole, so a clip's frames
    and its per-frame V/A always line up.

    Args:
        va_scale: Divisor that brings the JSON's V/A into [-1, 1].
        fps: Frame rate of the frame folders.
        **options: `LabelledOptions`. Its `labels_csv` is an optional `clip,label` CSV; without it a clip's label
            is the label whose default V/A lies nearest to the clip's mean V/A (AFEW-VA itself has no discrete
            labels).
    """
    import numpy as np

    from classemo.faces import FaceBox

    run = Conversion("afew-va", "clip", src, out, options, what="AFEW-VA folder")
    src, labels, rejects = run.src, run.labels, run.rejects
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    run.summary.inputs = len(folders)
    given: dict[str, str] = {}
    if run.options["labels_csv"]:
        rows_in, key, label_col = read_labels_csv(Path(run.options["labels_csv"]), ("clip", "clip_id", "video"),
                                                  run.options["label_column"])
        given = {r[key]: r[label_col] for r in rows_in}
    mapping = map_labels(list(given.values()), labels, run.options["label_map"]) if given else {}

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
    run.split(planned)
    faces = run.face_path()

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
        yield run.row(clip, frames, fps=fps, peak_index=peak, valence=float(np.mean(fv)), arousal=float(np.mean(fa)),
                      frame_valence=fv, frame_arousal=fa, va_source="annotated")

    extra = {"label_map": mapping, "label_source": "labels_csv" if given else "nearest default V/A",
             **run.split_record, "va_scale": va_scale}
    manifest = run.convert(planned, load=load, emit=emit, no_face=no_face, track=track, desc="afew-va", extra=extra)
    return manifest, run.summary
