"""The peak-frame rule: which frame of a clip is its expression's apex (the frame StarGAN redraws for M_H).

One rule for the whole project: the training decoders (`classemo.data.batches`) and anything else that needs a
clip's peak call `select_peak_index`. See docs/stargan.md for how the intensity fallback was measured.
"""

from __future__ import annotations

import logging
from typing import Sequence

import cv2
import numpy as np

from classemo.data.transforms import decode_image

log = logging.getLogger(__name__)

PEAK_FEATURE_SIZE = 16  # side of the grey thumbnail the intensity rule compares


def _peak_feature(frame: np.ndarray) -> np.ndarray:
    """Cheap expression feature: a 16x16 grey thumbnail, standardised so global lighting changes do not count."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) RGB arrays, got shape {frame.shape}")
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(grey, (PEAK_FEATURE_SIZE, PEAK_FEATURE_SIZE), interpolation=cv2.INTER_AREA).ravel()
    return (small - small.mean()) / (small.std() + 1e-6)


def intensity_peak_index(frames: Sequence[np.ndarray]) -> int:
    """The frame farthest from the first (neutral-most) frame in the thumbnail feature space.

    Clips in expression datasets start near neutral, so the distance from frame 0 measures how far the face has
    moved toward its expression; the apex is where that distance peaks.
    """
    if len(frames) == 0:
        raise ValueError("cannot pick a peak frame from an empty clip")
    feats = np.stack([_peak_feature(f) for f in frames])  # (T, 256)
    dist = np.linalg.norm(feats - feats[0], axis=1)  # (T,)
    return int(np.argmax(dist))


def select_peak_index(frames: Sequence[np.ndarray] | Sequence[bytes], peak_index: int | None = None) -> int:
    """The dataset's annotated `peak_index` when present and in range, otherwise `intensity_peak_index(frames)`.

    Args:
        frames: The clip's frames, decoded `(H, W, 3)` RGB or still encoded: the decoders pass encoded rows, and
            only the fallback (never taken on a valid dataset, whose format requires `peak_index`) decodes them.
        peak_index: The dataset's apex annotation, if any.
    """
    if peak_index is not None and 0 <= int(peak_index) < len(frames):
        return int(peak_index)
    if peak_index is not None:
        log.warning("peak_index %s is outside a clip of %d frames; using the intensity rule", peak_index,
                    len(frames))
    return intensity_peak_index([decode_image(f) if isinstance(f, bytes) else f for f in frames])
