"""Synthetic expression clips with known truth, and the dataset written from them.

Each clip is one identity going neutral -> apex -> neutral with a known peak frame and per-frame valence/arousal;
the dataset is split by identity. See docs/synthetic-data.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from classemo.faces import FaceSettings
from classemo.labels import LabelSet
from classemo.synth.face import ACTIONS, EXPRESSIONS, FaceIdentity, action_vector
from classemo.synth.render import (SUPERSAMPLE, Nuisance, margin_zoom, random_background, render_actions,
                                   render_face)

if TYPE_CHECKING:
    from classemo.data.format import Manifest

# 2: every clip carries a resting mood (V/A offset, arousal shown in the lids). 3: each person shows a mix of
# expressions (before, the identity cycle gave everyone the same two, so identity predicted the label pair).
SYNTH_VERSION = "synth/3"


def intensity_course(num_frames: int, peak_index: int, apex: float, width: float) -> np.ndarray:
    """Onset -> apex -> offset: a Gaussian bump of height `apex` whose unique maximum is at `peak_index`.

    Args:
        num_frames: Clip length.
        peak_index: Frame of the apex.
        apex: Intensity at the apex, in [0, 1].
        width: Standard deviation of the bump, in frames.
    """
    t = np.arange(num_frames, dtype=np.float64)
    return apex * np.exp(-0.5 * ((t - peak_index) / max(width, 1e-3)) ** 2)


# A clip's resting mood, as in the classroom generator (`classemo.synth.classroom.SCENARIOS`): a small valence
# offset and an arousal offset from tired (-0.4) to alert (+0.25) that shows in the lids,
# eye_open = MOOD_EYE_GAIN * arousal (the classroom's dull students: arousal -0.35, lids -0.45). Without it no
# training face is tired, and a model reads a tired classroom's narrowed lids as disgust or sadness.
MOOD_VALENCE = (-0.1, 0.1)
MOOD_AROUSAL = (-0.4, 0.25)
MOOD_EYE_GAIN = 1.25


def frame_va(label_va: tuple[float, float], course: np.ndarray,
             mood: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame valence/arousal: the resting `mood` moved toward the label's V/A in step with the intensity."""
    return (np.clip(mood[0] * (1 - course) + course * label_va[0], -1, 1),
            np.clip(mood[1] * (1 - course) + course * label_va[1], -1, 1))


def assign_subject_splits(subject_ids: Sequence[str], seed: int,
                          fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> dict[str, str]:
    """Seeded split of subjects into train/val/test, so that no subject appears in two splits.

    Every split gets at least one subject when there are three or more.
    """
    order = list(subject_ids)
    np.random.default_rng([seed, 7]).shuffle(order)
    n = len(order)
    n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    n_train = n - n_val - n_test
    return {s: ("train" if i < n_train else "val" if i < n_train + n_val else "test") for i, s in enumerate(order)}


def _encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG frame")
    return buf.tobytes()


def synth_clips(*, clips_per_class: int, num_frames: int, image_size: int, seed: int, subjects: int = 30,
                labels: LabelSet | None = None, fps: float = 10.0, margin: float = 0.2) -> Iterator[dict]:
    """Dataset rows (see classemo/data/format.py) of synthetic expression clips, generated lazily.

    Each clip is one identity going neutral -> apex -> back with a known `peak_index`; frame V/A follow the
    intensity from (0, 0) to the label's default V/A (jittered per clip). The clip-level V/A is the apex frame's.
    Every clip draws from its own seeded stream, so output is identical for the same arguments.

    Args:
        clips_per_class: Clips per label.
        num_frames: Frames per clip.
        image_size: Side of the square face crops.
        seed: Seed of everything: identities, splits, expressions and nuisance.
        subjects: Number of distinct identities; clips are split by identity.
        labels: Label set to draw (default the paper's); every label must be a drawable expression.
        fps: Frame rate written into the rows.
        margin: The face path's margin the crops imitate (the face fills more of the crop as it shrinks).
    """
    labels = labels or LabelSet.paper()
    _check_synth_args(labels, clips_per_class=clips_per_class, num_frames=num_frames, image_size=image_size,
                      subjects=subjects, fps=fps, margin=margin)
    return _synth_rows(labels, clips_per_class=clips_per_class, num_frames=num_frames, image_size=image_size,
                       seed=seed, subjects=subjects, fps=fps, zoom=margin_zoom(margin))


def _check_synth_args(labels: LabelSet, *, clips_per_class: int, num_frames: int, image_size: int, subjects: int,
                      fps: float, margin: float = 0.2) -> None:
    """Raise ValueError naming the first bad argument (eagerly, before anything is written)."""
    unknown = [n for n in labels.names if n not in EXPRESSIONS]
    if unknown:
        raise ValueError(f"the synthetic generator cannot draw labels {unknown}; it knows {sorted(EXPRESSIONS)}")
    for name, v in (("clips_per_class", clips_per_class), ("num_frames", num_frames), ("subjects", subjects)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not 0 <= margin <= 1:
        raise ValueError(f"margin must be between 0 and 1, got {margin}")


def _synth_rows(labels: LabelSet, *, clips_per_class: int, num_frames: int, image_size: int, seed: int,
                subjects: int, fps: float, zoom: float = 1.0) -> Iterator[dict]:
    id_rng = np.random.default_rng([seed, 1])
    idents = [FaceIdentity.random(id_rng, f"synth-{seed}-{k:03d}") for k in range(subjects)]
    split_of = assign_subject_splits([i.subject_id for i in idents], seed)
    plan = [(label, j) for j in range(clips_per_class) for label in labels.names]
    for k, (label, j) in enumerate(plan):
        rng = np.random.default_rng([seed, 2, k])
        # Each expression cycles through all identities, from its own offset: a person shows a mix of expressions
        # (every one, given clips_per_class >= subjects), so who someone is never predicts what they show.
        ident = idents[(j + labels.index(label) * max(1, subjects // len(labels))) % subjects]
        peak = int(rng.integers(num_frames // 3, max(num_frames // 3 + 1, (2 * num_frames) // 3 + 1)))
        peak = min(peak, num_frames - 1)
        apex = float(rng.uniform(0.6, 1.0)) if label != "neutral" else 0.0
        course = intensity_course(num_frames, peak, apex, width=float(rng.uniform(0.25, 0.6)) * num_frames)
        va = labels.default_va[label]
        # Per-clip V/A jitter, bounded so the apex valence keeps the label's sign.
        va_clip = (va[0] + float(np.clip(rng.normal(0, 0.05), -0.1, 0.1)),
                   va[1] + float(np.clip(rng.normal(0, 0.05), -0.1, 0.1)))
        mood = (float(rng.uniform(*MOOD_VALENCE)), float(rng.uniform(*MOOD_AROUSAL)))
        if label == "neutral":
            # A neutral face shows only its mood: V/A are the mood's, at every frame.
            fv, fa = np.full(num_frames, mood[0]), np.full(num_frames, mood[1])
        else:
            fv, fa = frame_va(va_clip, course, mood)
        style = {a: float(rng.normal(0, 0.08)) for a in ACTIONS}  # the clip's own way of moving the face
        style["eye_open"] += MOOD_EYE_GAIN * mood[1]
        big = image_size * SUPERSAMPLE
        background = random_background(rng, big, big)
        base = Nuisance.random(rng)
        frames = []
        nuisance = base
        for t in range(num_frames):
            actions = action_vector(label, float(course[t]), identity=ident, extra=style)
            frames.append(_encode_png(render_actions(ident, actions, image_size, rng, nuisance, background,
                                                        zoom=zoom)))
            nuisance = nuisance.moved(rng, 1.0)
        yield {
            "clip_id": f"synth-{seed}-{k:06d}",
            "subject_id": ident.subject_id,
            "source": "synth",
            "split": split_of[ident.subject_id],
            "frames": frames,
            "fps": fps,
            "peak_index": peak,
            "label": label,
            "label_idx": labels.index(label),
            "valence": float(fv[peak]),
            "arousal": float(fa[peak]),
            "frame_valence": [float(v) for v in fv],
            "frame_arousal": [float(v) for v in fa],
            "va_source": "annotated",
        }


def synth_params(*, clips_per_class: int, num_frames: int, image_size: int, seed: int, subjects: int,
                 fps: float, margin: float = 0.2) -> dict:
    """The parameters that fully determine a synthetic dataset (stored in its manifest to allow reuse)."""
    return {"generator": SYNTH_VERSION, "clips_per_class": int(clips_per_class), "num_frames": int(num_frames),
            "image_size": int(image_size), "seed": int(seed), "subjects": int(subjects), "fps": float(fps),
            "margin": float(margin)}


def existing_synth_dataset(root: str, params: dict) -> Manifest | None:
    """The manifest at root if it holds a synthetic dataset written with exactly `params`, else None."""
    from classemo.data.format import DatasetFormatError, read_manifest

    try:
        manifest = read_manifest(root)
    except (DatasetFormatError, FileNotFoundError):
        return None
    return manifest if manifest.extra.get("synth_params") == params else None


def write_synth_dataset(root: str, *, clips_per_class: int = 60, num_frames: int = 8, image_size: int = 64,
                        seed: int = 0, subjects: int = 30, fps: float = 10.0, margin: float = 0.2,
                        reuse: bool = False, progress: bool = False) -> Manifest:
    """Generate the synthetic expression dataset and write it in the Parquet format, split by subject.

    Args:
        root: Local path or `s3://bucket/prefix`.
        clips_per_class: Clips per label of the paper's set (7 labels).
        num_frames: Frames per clip.
        image_size: Side of the square face crops.
        seed: Same seed, same bytes.
        subjects: Distinct identities; train/val/test never share one.
        fps: Frame rate recorded in the rows.
        margin: The face path's margin (`FaceSettings.margin`) the crops imitate and the manifest records, so the
            dataset merges with real faces converted at that margin.
        reuse: Return the existing dataset at root untouched when it was written with the same parameters.
        progress: Show a tqdm bar.

    Returns:
        The dataset's manifest; `manifest.extra["reused"]` says whether it was reused.
    """
    from tqdm import tqdm

    from classemo.data.format import write_dataset

    params = synth_params(clips_per_class=clips_per_class, num_frames=num_frames, image_size=image_size, seed=seed,
                          subjects=subjects, fps=fps, margin=margin)
    if reuse:
        found = existing_synth_dataset(str(root), params)
        if found is not None:
            found.extra["reused"] = True
            return found
    labels = LabelSet.paper()
    rows = synth_clips(clips_per_class=clips_per_class, num_frames=num_frames, image_size=image_size, seed=seed,
                       subjects=subjects, labels=labels, fps=fps, margin=margin)
    if progress:
        rows = tqdm(rows, total=clips_per_class * len(labels), desc="synth clips", unit="clip")
    # The faces are drawn centred and nearly upright, as an aligned crop shows a face: a model trained on them is
    # used with the default (YuNet, aligned) face path at that margin.
    face = FaceSettings(size=image_size, margin=margin).to_dict()
    manifest = write_dataset(rows, root, labels, image_size=image_size, source="synth",
                             converter_version=SYNTH_VERSION, extra={"synth_params": params}, face=face)
    manifest.extra["reused"] = False
    return manifest


def sample_grid(*, seed: int = 0, identities: int = 4, size: int = 64, course_frames: int = 7) -> np.ndarray:
    """A picture of the generator for the docs: one row per identity with every label at its apex, then one row
    of a `happy` clip's onset -> apex -> offset. Labels are written above the columns.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    labels = LabelSet.paper().names
    rng = np.random.default_rng([seed, 5])
    header = np.full((16, size * len(labels), 3), 255, np.uint8)
    for j, name in enumerate(labels):
        cv2.putText(header, name, (j * size + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [header]
    for k in range(identities):
        ident = FaceIdentity.random(rng, f"grid-{k}")
        rows.append(np.concatenate([render_face(ident, e, 1.0, size=size, rng=rng, jitter=0.3) for e in labels], 1))
    ident = FaceIdentity.random(rng, "grid-course")
    big = size * SUPERSAMPLE
    background, nuisance = random_background(rng, big, big), Nuisance.random(rng, 0.3)
    course = intensity_course(course_frames, course_frames // 2, 1.0, width=course_frames / 4)
    strip = [render_actions(ident, action_vector("happy", float(c), identity=ident), size, rng, nuisance, background)
             for c in course]
    strip_img = np.full_like(rows[1], 255)
    strip_img[:, : size * len(strip)] = np.concatenate(strip, 1)[:, : strip_img.shape[1]]
    rows.append(strip_img)
    return np.concatenate(rows, 0)
