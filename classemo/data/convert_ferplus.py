"""(d) FER+: FER2013's 48x48 grey faces with ten crowd votes each -> 1-frame clips with soft labels.

Layout (Microsoft's FERPlus training code): `<src>/FER2013Train|FER2013Valid|FER2013Test/` with the PNGs and a
`label.csv` whose rows are `image name, "(x, y, w, h)" face box, ten vote counts` in the order below
(Barsoum, Zhang, Canton Ferrer, Zhang, "Training deep networks for facial expression recognition with
crowd-sourced label distribution", ICMI 2016). The published splits are kept; FER+ has no person ids.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from classemo.data.conversion import Conversion, ConvertOptions
from classemo.data.convert import ConversionError, ConversionSummary, PlannedClip, Rejects, map_labels, read_image
from classemo.data.label_map import load_label_map
from classemo.labels import LabelSet

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Unpack

    from classemo.data.format import Manifest
    from classemo.faces import FaceBox

# label.csv's ten vote columns, in file order; "NF" is "not a face".
VOTE_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
# FER+ folder -> split; the test copy of a duplicate is kept first, then valid, then train.
SPLIT_FOLDERS = (("FER2013Test", "test"), ("FER2013Valid", "val"), ("FER2013Train", "train"))
# Onto the paper's set: surprise is "positive" as in configs/label_maps/muxspace.yaml; contempt, unknown and NF fit
# none of the paper's classes and are dropped unless --label-map maps them.
DEFAULT_MAP: dict[str, str | None] = {"neutral": "neutral", "happiness": "happy", "surprise": "positive",
                                      "sadness": "sad", "anger": "anger", "disgust": "disgust", "fear": "fear",
                                      "contempt": None, "unknown": None, "NF": None}
LABEL_RULES = ("majority", "plurality")
# FER2013's crops are tight (chin to brow, little context) and 48 px. Measured with YuNet on the first 500 FER+ train
# images: 4x cubic with a mid-grey margin of half the side on every edge finds a face in 487 (97.4%); 5x 97.6%, a
# quarter margin 96.0%, no margin 96.8%, the border replicated instead 94.2%, 3x 92.0%, 2x 91.2%. A constant grey
# margin reads as background, where a replicated one smears the face's edge into a larger blob.
UPSCALE = 4
PAD_FRACTION = 0.5
PAD_GREY = 128


def prepare_face(image: "np.ndarray", upscale: int = UPSCALE, pad: float = PAD_FRACTION) -> "np.ndarray":
    """The frame the face path sees for one FER+ image: upscaled (cubic) and padded with a mid-grey margin.

    Analyze and Serve cut faces from whole frames; a FER+ image is already a tight crop, so it gets the context a
    detector expects. A crop of this frame by `FacePath` is what a model sees for the same face elsewhere.
    """
    import cv2

    up = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    p = int(round(pad * up.shape[0]))
    return cv2.copyMakeBorder(up, p, p, p, p, cv2.BORDER_CONSTANT, value=(PAD_GREY,) * 3) if p else up


def _inner_box(frame: "np.ndarray", pad: float) -> "FaceBox":
    """The upscaled image inside `prepare_face`'s padding: the whole-image fallback without the padding."""
    from classemo.faces import FaceBox

    side = int(round(frame.shape[0] / (1 + 2 * pad)))
    p = (frame.shape[0] - side) // 2
    return FaceBox(p, p, side, side, 0.0)


def vote_winner(votes: list[int], targets: dict[str, str | None], rule: str) -> tuple[str | None, str]:
    """The winning target label of one row's votes, or None and the reason there is none.

    A row whose "not a face" votes are the most of all ten is not a face. Otherwise the counted votes are the eight
    emotion columns (unknown and NF only where the label map maps them: they are no vote for an emotion), as the
    FER+ paper's majority vote does; on train this gives about the counts its data card lists. Votes of classes
    mapped onto one label add up; a dropped emotion (contempt) competes on its own, so a face most annotators called
    contemptuous is not relabelled by its few other votes. majority: more than half of the counted votes;
    plurality: the most, without a tie.
    """
    if targets.get("NF") is None and votes[-1] > 0 and votes[-1] >= max(votes[:-1]):
        return None, "not a face"
    pooled: dict[str, int] = {}
    for name, n in zip(VOTE_CLASSES, votes):
        if name in ("unknown", "NF") and targets.get(name) is None:
            continue
        key = targets.get(name) or f"!{name}"
        pooled[key] = pooled.get(key, 0) + n
    total = sum(pooled.values())
    if total <= 0:
        return None, "no emotion votes"
    ranked = sorted(pooled.items(), key=lambda kv: -kv[1])
    best, n = ranked[0]
    if rule == "majority" and 2 * n <= total:
        return None, "no majority"
    if rule == "plurality" and len(ranked) > 1 and ranked[1][1] == n:
        return None, "no plurality (tie)"
    if best.startswith("!"):
        return None, f"winning vote {best[1:]} dropped by label map"
    return best, ""


def soft_label(votes: list[int], targets: dict[str, str | None], labels: LabelSet) -> list[float]:
    """The vote distribution over `labels` (class-index order), over the mapped votes only (dropped ones left out)."""
    dist = [0.0] * len(labels.names)
    for name, n in zip(VOTE_CLASSES, votes):
        if targets.get(name) is not None:
            dist[labels.index(targets[name])] += n
    total = sum(dist)
    return [v / total for v in dist]


def _reject_duplicate(rejects: Rejects, path: Path, kept: str) -> None:
    """rejected.csv names the copy kept ("duplicate of test/fer0032220.png"); the summary counts "duplicate"."""
    rejects.add(path, "duplicate")
    rejects.rows[-1] = (str(path), f"duplicate of {kept}")


def _read_label_csv(path: Path, limit: int | None) -> list[tuple[str, list[int] | None]]:
    """(image name, ten votes or None when the row is malformed) per row of a FER+ label.csv."""
    rows: list[tuple[str, list[int] | None]] = []
    with open(path, newline="") as f:
        for r in csv.reader(f):
            if not r or not r[0].strip():
                continue
            if limit is not None and len(rows) >= limit:
                break
            try:
                votes = [int(float(v)) for v in r[2:12]]
                rows.append((r[0].strip(), votes if len(votes) == 10 and min(votes) >= 0 else None))
            except ValueError:
                rows.append((r[0].strip(), None))
    return rows


def convert_ferplus(
    src: str | os.PathLike,
    out: str,
    *,
    label_rule: str = "majority",
    label_map: str | os.PathLike | dict | None = None,
    limit: int | None = None,
    **options: Unpack[ConvertOptions],
) -> tuple["Manifest", ConversionSummary]:
    """Convert FER+ into 1-frame clips, each with its hard label (by `label_rule`) and its soft label.

    Exact pixel duplicates (FER2013 holds ~1,840, 556 of them across splits) are dropped, keeping the test copy,
    then valid, then train, so the test split measures faces the model never trained on. The image name is the
    subject id: FER+ has no person ids, so a person may still appear in two splits.

    Args:
        src: The folder holding FER2013Train, FER2013Valid and FER2013Test.
        label_rule: majority (a label with more than half of the votes) or plurality (the most votes, no tie).
        label_map: YAML path or dict over the vote classes (neutral, happiness, ..., contempt, unknown, NF),
            merged over `DEFAULT_MAP` (e.g. `contempt: disgust`).
        limit: First N rows of each split's label.csv only (tests, quick looks).
        **options: `ConvertOptions`: label set, crop, face detector, progress (source default: ferplus).
    """
    import numpy as np

    run = Conversion("ferplus", "image", src, out, options, accepts=ConvertOptions, source="ferplus")
    src, labels, rejects = run.src, run.labels, run.rejects
    if label_rule not in LABEL_RULES:
        raise ConversionError(f"label rule must be one of {LABEL_RULES}, got {label_rule!r}")
    missing = [d for d, _ in SPLIT_FOLDERS if not (src / d / "label.csv").is_file()]
    if missing:
        raise ConversionError(f"{src} is not a FERPlus folder: no {', '.join(f'{d}/label.csv' for d in missing)}")
    user = load_label_map(label_map) if isinstance(label_map, (str, os.PathLike)) else dict(label_map or {})
    base = {k: v for k, v in DEFAULT_MAP.items() if v is None or v in labels.names}
    targets = map_labels(VOTE_CLASSES, labels, {**base, **user})
    run.summary.split_by = "FER+ splits"

    planned: list[PlannedClip] = []
    kept: dict[str, str] = {}  # pixel hash -> split/name of the copy kept
    for folder, split in SPLIT_FOLDERS:
        rows = _read_label_csv(src / folder / "label.csv", limit)
        run.summary.inputs += len(rows)
        for name, votes in rows:
            path = src / folder / name
            if votes is None:
                rejects.add(path, "bad label.csv row")
                continue
            if not path.is_file():
                rejects.add(path, "file not found")
                continue
            try:
                image = read_image(path)
            except (OSError, ValueError) as e:
                rejects.add(path, "unreadable image", str(e))
                continue
            label, why = vote_winner(votes, targets, label_rule)
            if label is None:
                rejects.add(path, why, ",".join(map(str, votes)))
                continue
            digest = hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()
            if digest in kept:
                _reject_duplicate(rejects, path, kept[digest])
                continue
            kept[digest] = f"{split}/{name}"
            clip_id = f"{split}/{Path(name).stem}"
            planned.append(PlannedClip(clip_id, label, [path], subject_id=name, group=name, split=split,
                                       meta={"soft": soft_label(votes, targets, labels)}))
    run.face_path()

    def load(clip: PlannedClip) -> list["np.ndarray"]:
        return [prepare_face(read_image(clip.paths[0]))]

    def no_face(clip: PlannedClip, _: int) -> None:  # not reached: every FER+ image is a face-centred crop
        rejects.add(clip.paths[0], "no face found")

    def emit(clip: PlannedClip, frames: list[bytes]) -> Iterator[dict]:
        yield run.row(clip, frames, fps=1.0, peak_index=0, soft_label=clip.meta["soft"])

    extra = {"label_map": targets, "label_rule": label_rule, "input": str(src), "limit": limit,
             "upscale": UPSCALE, "pad_fraction": PAD_FRACTION, "subject_id": "image name (FER+ has no person ids)"}
    manifest = run.convert(planned, load=load, emit=emit, no_face=no_face, desc="ferplus", extra=extra,
                           whole_image_fallback=True, fallback_box=lambda frame: _inner_box(frame, PAD_FRACTION),
                           per_frame=True)
    return manifest, run.summary
