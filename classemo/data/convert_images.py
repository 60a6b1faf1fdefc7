"""(a) A labelled image folder -> 1-frame clips, or sequences by a file-name pattern (CK+)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from classemo.data.conversion import Conversion
from classemo.data.convert import (IMAGE_EXTENSIONS, ConversionError, ConversionSummary, PlannedClip, map_labels,
                                   read_image, read_labels_csv)

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Unpack

    from classemo.data.conversion import LabelledOptions
    from classemo.data.format import Manifest


def convert_images(
    src: str | os.PathLike,
    out: str,
    *,
    pattern: str | None = None,
    subject_pattern: str | None = None,
    whole_image_fallback: bool = False,
    min_face_fraction: float = 0.3,
    fps: float = 30.0,
    **options: Unpack[LabelledOptions],
) -> tuple["Manifest", ConversionSummary]:
    """Convert a labelled image folder.

    Args:
        src: Image folder. Labels come from the `labels_csv` option (an `image` column and a label column; default
            `<src>/labels.csv` when present; image paths are relative to `src` or `src/images`) or else from one
            sub-folder per class.
        out: Output dataset root (local or s3://).
        pattern: Filename regex with named groups `subject` and optionally `sequence` and `frame`: images with
            the same subject and sequence become one clip ordered by frame number, its peak the last frame
            (CK+ sequences run from neutral onset to apex). Without it every image is a 1-frame clip.
        subject_pattern: Filename regex with a named group `subject`, for folders of single photos named after
            the person (LFW's `Aaron_Peirsol_0004.jpg`: `'^(?P<subject>.+)_[^_]+$'`). Every image stays a
            1-frame clip, but all of one person's photos land in the same split, so the test split measures
            expressions of people the model has not seen rather than identities it has.
        whole_image_fallback: When no face is found, keep the whole image as the crop (for photos that are
            already face-centred crops) instead of rejecting it; counted apart from detected faces.
        min_face_fraction: Haar only: smallest face side as a fraction of the image's shorter side. Labelled face
            photos are mostly face; skipping small windows makes the cascade ~4x faster. Lower it for small faces.
        fps: Frame rate recorded for image sequences.
        **options: `LabelledOptions`: labels CSV and map, label set, crop, face detector, split, progress.
    """
    run = Conversion("images", "image", src, out, options, what="image folder")
    src, labels, rejects = run.src, run.labels, run.rejects
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
    labels_csv = run.options["labels_csv"]
    csv_path = Path(labels_csv) if labels_csv else (src / "labels.csv" if (src / "labels.csv").is_file() else None)
    if csv_path is not None:
        rows, key, label_col = read_labels_csv(csv_path, ("image", "path", "file", "filename"),
                                                 run.options["label_column"])
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
    run.summary.inputs = len(entries)
    mapping = map_labels([lab for _, lab, _ in entries], labels, run.options["label_map"])

    # 2. Plan clips; reject what cannot be planned (missing, wrong type, dropped label, duplicate, no match).
    clips: dict[str, PlannedClip] = {}
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
            clips[clip_id] = PlannedClip(clip_id, target, [path], subject_id=m["subject"], group=m["subject"])
            continue
        if regex is None:
            clips[clip_id] = PlannedClip(clip_id, target, [path], group=clip_id)
            continue
        m = regex.search(path.name)
        if m is None:
            rejects.add(path, "file name does not match pattern", pattern)
            continue
        groups = m.groupdict()
        subject, sequence = groups["subject"], groups.get("sequence") or ""
        clip_id = f"{subject}_{sequence}" if sequence else subject
        clip = clips.setdefault(clip_id, PlannedClip(clip_id, target, [], subject_id=subject, group=subject))
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
    run.split(planned)
    run.face_path(min_rel_size=min_face_fraction, max_side=128)

    # 3. Decode, detect, crop and encode, streaming rows into the writer.
    def load(clip: PlannedClip) -> list["np.ndarray"]:
        images, good = [], []
        for p in clip.paths:
            try:
                images.append(read_image(p))
                good.append(p)
            except (OSError, ValueError) as e:
                rejects.add(p, "unreadable image", str(e))
        clip.paths = good  # what is left for a "no face found" rejection
        return images

    def no_face(clip: PlannedClip, _: int) -> None:
        for p in clip.paths:
            rejects.add(p, "no face found")

    def emit(clip: PlannedClip, frames: list[bytes]) -> Iterator[dict]:
        yield run.row(clip, frames, fps=fps, peak_index=len(frames) - 1)

    manifest = run.convert(planned, load=load, emit=emit, no_face=no_face, desc="images",
                           extra={"label_map": mapping, **run.split_record}, whole_image_fallback=whole_image_fallback,
                           per_frame=True)
    return manifest, run.summary
