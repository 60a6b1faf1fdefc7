"""Preprocessing shared by training, evaluation, batch video analysis and Serve (one path, no train/serve skew).

Frames travel as encoded bytes (PNG/JPEG) in the dataset and as HxWx3 uint8 RGB arrays everywhere else. The model
sees `(T, 3, S, S)` float tensors, normalised with the checkpoint's mean/std, and batches are padded to the model's
`num_frames` with a boolean mask (True = real frame).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from einops import rearrange

from classemo.data.augmentations import Augment
from classemo.preprocessing import DEFAULT_MEAN, DEFAULT_STD, decode_image_bgr


class FrameError(ValueError):
    """A frame array with the wrong shape, dtype or channel count."""


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes into an upright RGB image: `decode_image_bgr` (EXIF orientation applied), in RGB.

    Args:
        data: The encoded image.

    Returns:
        `(H, W, 3)` uint8 RGB array.

    Raises:
        ImageDecodeError: If `data` is empty, not bytes, truncated, or not an image format OpenCV reads.
    """
    return cv2.cvtColor(decode_image_bgr(data), cv2.COLOR_BGR2RGB)


def _describe(where: str | None, index: int) -> str:
    return f"{where}, frame {index}" if where else f"frame {index}"


def validate_frames(frames: Sequence[np.ndarray] | np.ndarray, *, where: str | None = None) -> list[np.ndarray]:
    """Check that every frame is an image the model can take, converting greyscale to RGB.

    Args:
        frames: A sequence of `(H, W, 3)` RGB or `(H, W)` / `(H, W, 1)` greyscale uint8 arrays, or one
            `(T, H, W[, C])` array.
        where: Names the clip in error messages (e.g. "clip 3").

    Returns:
        The frames as a list of `(H, W, 3)` uint8 RGB arrays.

    Raises:
        FrameError: On zero frames, a non-array frame, a wrong dtype, a wrong number of dimensions or channels.
    """
    label = where or "clip"
    if isinstance(frames, np.ndarray):
        if frames.ndim not in (3, 4):
            raise FrameError(f"{label}: a clip array must be (T, H, W, 3) or (T, H, W), got shape {frames.shape}")
        frames = list(frames)
    if len(frames) == 0:
        raise FrameError(f"{label} has zero frames; a clip needs at least one")
    out = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            raise FrameError(f"{_describe(where, i)}: expected a numpy array, got {type(frame).__name__}")
        if frame.dtype != np.uint8:
            raise FrameError(f"{_describe(where, i)}: expected dtype uint8 (0-255 RGB), got {frame.dtype}")
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        elif frame.ndim != 3 or frame.shape[2] != 3:
            raise FrameError(
                f"{_describe(where, i)}: expected an (H, W, 3) RGB or (H, W) greyscale image, got shape {frame.shape}"
            )
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise FrameError(f"{_describe(where, i)}: empty image of shape {frame.shape}")
        out.append(frame)
    return out


def resize_frame(frame: np.ndarray, image_size: int) -> np.ndarray:
    """Resize to `image_size` x `image_size` (face crops are near-square; a slight aspect change is harmless)."""
    h, w = frame.shape[:2]
    if h == image_size and w == image_size:
        return frame
    # INTER_AREA avoids aliasing when shrinking; INTER_LINEAR is the usual choice when enlarging.
    interp = cv2.INTER_AREA if h > image_size or w > image_size else cv2.INTER_LINEAR
    return cv2.resize(frame, (image_size, image_size), interpolation=interp)


def frames_to_tensor(
    frames: Sequence[np.ndarray],
    *,
    image_size: int,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
) -> torch.Tensor:
    """Resize and normalise RGB uint8 frames into the model's input.

    Args:
        frames: `(H, W, 3)` uint8 RGB arrays of any size (see `validate_frames`).
        image_size: Output side S.
        mean: Per-channel mean, on the [0, 1] scale.
        std: Per-channel standard deviation, on the [0, 1] scale.

    Returns:
        `(T, 3, S, S)` float32 tensor.
    """
    if len(frames) == 0:
        raise FrameError("cannot build a tensor from zero frames")
    stack = np.stack([resize_frame(f, image_size) for f in frames])  # (T, S, S, 3) uint8
    x = torch.from_numpy(stack).float().div_(255.0)
    x = rearrange(x, "t h w c -> t c h w")
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def select_frame_indices(
    num_total: int, num_frames: int, *, train: bool, rng: np.random.Generator | None = None
) -> list[int]:
    """Choose which frames of a clip the model sees.

    A clip no longer than `num_frames` keeps all its frames. A longer clip is cut into `num_frames` equal segments
    (TSN-style): evaluation takes each segment's centre, training a random frame inside each segment, so the
    whole clip's time span is covered either way.

    Args:
        num_total: Frames in the clip.
        num_frames: The model's frames per clip.
        train: Random (True) or deterministic (False) choice.
        rng: Random generator for training; a fresh unseeded one when None.

    Returns:
        Sorted frame indices, at most `num_frames` of them.
    """
    if num_total <= 0:
        raise ValueError(f"a clip needs at least one frame, got num_total={num_total}")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if num_total <= num_frames:
        return list(range(num_total))
    edges = np.linspace(0, num_total, num_frames + 1)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        lo, hi = np.floor(edges[:-1]).astype(int), np.floor(edges[1:]).astype(int)
        idx = lo + (rng.random(num_frames) * (hi - lo)).astype(int)
    else:
        idx = np.floor((edges[:-1] + edges[1:]) / 2).astype(int)
    return [int(i) for i in np.clip(idx, 0, num_total - 1)]


def pad_clips(clips: Sequence[torch.Tensor], num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length clips into one batch, zero-padded at the end.

    Args:
        clips: `(T_i, 3, S, S)` tensors (or `(T_i, D)` feature sequences) with T_i <= num_frames.
        num_frames: Padded length T.

    Returns:
        `x` of shape `(B, T, ...)` and `mask` of shape `(B, T)`, bool, True where the frame is real.
    """
    if len(clips) == 0:
        raise ValueError("pad_clips needs at least one clip")
    tail = clips[0].shape[1:]
    x = clips[0].new_zeros((len(clips), num_frames, *tail))
    mask = torch.zeros(len(clips), num_frames, dtype=torch.bool)
    for b, clip in enumerate(clips):
        t = clip.shape[0]
        if t == 0:
            raise ValueError(f"clip {b} has zero frames")
        if t > num_frames:
            raise ValueError(f"clip {b} has {t} frames, more than the model's limit of num_frames={num_frames}")
        if clip.shape[1:] != tail:
            raise ValueError(f"clip {b} has frame shape {tuple(clip.shape[1:])}, expected {tuple(tail)}")
        x[b, :t] = clip
        mask[b, :t] = True
    return x, mask


def prepare_clip(
    encoded_frames: Sequence[bytes],
    *,
    num_frames: int,
    image_size: int,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    train: bool = False,
    rng: np.random.Generator | None = None,
    augment: Augment | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Dataset row frames -> model input: select, decode, (augment), resize and normalise.

    Only the selected frames are decoded, which matters for long clips.

    Args:
        encoded_frames: The row's PNG/JPEG frames.
        num_frames: The model's frames per clip.
        image_size: The model's input side.
        mean: Normalisation mean.
        std: Normalisation standard deviation.
        train: Random frame choice (and augmentation when `augment` is given).
        rng: Random generator for the frame choice and augmentation.
        augment: Train-time augmentation; ignored when `train` is False.

    Returns:
        `(T, 3, S, S)` tensor and the chosen frame indices (to pick matching per-frame targets).
    """
    rng = rng if rng is not None else np.random.default_rng()
    idx = select_frame_indices(len(encoded_frames), num_frames, train=train, rng=rng)
    frames = [resize_frame(decode_image(encoded_frames[i]), image_size) for i in idx]
    return finish_frames(frames, image_size=image_size, mean=mean, std=std, train=train, rng=rng,
                         augment=augment), idx


def prepare_decoded(
    frames: Sequence[np.ndarray],
    *,
    num_frames: int,
    image_size: int,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    train: bool = False,
    rng: np.random.Generator | None = None,
    augment: Augment | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """`prepare_clip` for a clip whose frames are already decoded (and usually resized): the decode-once cache.

    The same frame choice, augmentation and normalisation as `prepare_clip`, draw for draw.
    """
    rng = rng if rng is not None else np.random.default_rng()
    idx = select_frame_indices(len(frames), num_frames, train=train, rng=rng)
    chosen = [resize_frame(np.asarray(frames[i]), image_size) for i in idx]
    return finish_frames(chosen, image_size=image_size, mean=mean, std=std, train=train, rng=rng,
                         augment=augment), idx


def finish_frames(
    frames: Sequence[np.ndarray],
    *,
    image_size: int,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
    train: bool = False,
    rng: np.random.Generator | None = None,
    augment: Augment | None = None,
) -> torch.Tensor:
    """Frames at the model's side -> (augmented) normalised `(T, 3, S, S)` tensor.

    Augmentation runs after the resize, at the model's side: its shifts and zooms are fractions of the frame, so
    the draw means the same at any size, and it costs less on the small frame.
    """
    if train and augment is not None:
        frames = augment(frames, rng if rng is not None else np.random.default_rng())
    return frames_to_tensor(frames, image_size=image_size, mean=mean, std=std)
