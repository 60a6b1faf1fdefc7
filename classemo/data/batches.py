"""Dataset rows -> model inputs, one batch at a time: the decoders the training job maps over its Ray Data splits.

Each decoder is a plain callable on a pyarrow Table (or on another decoder's numpy output), so the job's whole
input pipeline is tested without Ray; `jobs/data.py` only wires them into `map_batches`. Decoding and augmentation
use the library's own transforms (`classemo.data.transforms`), the same ones `Predictor` uses, so training and
serving preprocess identically.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from classemo.data.dataset import NO_SOFT_LABELS, DatasetError
from classemo.data.format import Manifest
from classemo.data.peak import select_peak_index
from classemo.data.augmentations import AugmentChain, ClassroomAugment, ClipAugment
from classemo.data.transforms import (decode_image, finish_frames, frames_to_tensor, pad_clips, prepare_clip,
                                      prepare_decoded, resize_frame, select_frame_indices)
from classemo.metrics import VA_SOURCES
from classemo.preprocessing import DEFAULT_MEAN, DEFAULT_STD, GAN_MEAN, GAN_STD


def shard_of(clip_ids: Sequence[str], world_size: int) -> np.ndarray:
    """Stable shard index per clip (crc32, not Python's salted hash), so validation splits exactly by clip."""
    return np.array([zlib.crc32(c.encode()) % world_size for c in clip_ids], dtype=np.int64)


class KeepShard:
    """map_batches filter: the rows of one validation shard (applied before decoding, so it is cheap)."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("clip_id").to_pylist()
        return batch.filter(pa.array(shard_of(ids, self.world_size) == self.rank))


def clip_va(batch: pa.Table) -> np.ndarray:
    """Clip-level (valence, arousal) `(B, 2)`, NaN where the dataset has none (the loss and metrics skip NaN)."""
    cols = []
    for name in ("valence", "arousal"):
        col = batch.column(name).to_pylist() if name in batch.column_names else [None] * batch.num_rows
        cols.append([np.nan if v is None else float(v) for v in col])
    return np.asarray(cols, dtype=np.float32).T.reshape(batch.num_rows, 2)


def soft_labels(batch: pa.Table, num_classes: int) -> np.ndarray:
    """Soft labels `(B, C)` from the `soft_label` column, a row of NaN where a clip has none (the loss then uses its
    hard label).

    Raises:
        DatasetError: the column is missing (the job asked for soft labels from a dataset without them) or a row has
            another number of classes.
    """
    if "soft_label" not in batch.column_names:
        raise DatasetError(NO_SOFT_LABELS.format(root="the dataset"))
    out = np.full((batch.num_rows, num_classes), np.nan, dtype=np.float32)
    for i, row in enumerate(batch.column("soft_label").to_pylist()):
        if row is None:
            continue
        if len(row) != num_classes:
            raise DatasetError(f"soft_label of row {i} has {len(row)} values, the label set {num_classes}")
        out[i] = row
    return out


def va_sources(batch: pa.Table) -> list[str]:
    """Per clip where its V/A came from (`classemo.metrics.VA_SOURCES`); a missing value means none."""
    return [v or "none" for v in batch.column("va_source").to_pylist()]


def _va_source_index(batch: pa.Table) -> np.ndarray:
    # Indices, not strings: the model-input columns must be numeric tensors.
    return np.asarray([VA_SOURCES.index(v) for v in va_sources(batch)], dtype=np.int64)


def eval_frames(encoded: Sequence[bytes], num_frames: int) -> list[np.ndarray]:
    """The frames evaluation shows the model of one clip, decoded at full size for `Predictor` (which resizes):
    the same deterministic choice as the validation decoder's."""
    return [decode_image(encoded[i]) for i in select_frame_indices(len(encoded), num_frames, train=False)]


class _ModelInputs:
    """Shared by the streaming and the cached decoders: per-batch randomness, clip and peak tensors, padding."""

    def __init__(self, *, num_frames: int, image_size: int, train: bool, augment: bool,
                 mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD, seed: int = 0,
                 soft_classes: int = 0, classroom: bool = False) -> None:
        self.num_frames, self.image_size, self.train = num_frames, image_size, train
        self.soft_classes = soft_classes  # C of the soft_label column to pass on as `soft`; 0: none
        self.mean, self.std = tuple(mean), tuple(std)
        # `classroom` (DataConfig.classroom_augment): the camera's degradations after ClipAugment's draw.
        steps = (ClipAugment(), ClassroomAugment()) if classroom else (ClipAugment(),)
        self.augment = AugmentChain(steps) if (train and augment) else None
        self.seed = seed

    def rng(self) -> np.random.Generator:
        # Fresh entropy per training batch: the instance is copied into every task, so a stored generator would
        # replay the same draws in each one.
        return np.random.default_rng(None if self.train else self.seed)

    def peak(self, frame: np.ndarray, rng: np.random.Generator) -> Any:
        """The peak frame (for M_H) at the model's side, augmented like the clip's frames: `(3, S, S)`."""
        frame = resize_frame(frame, self.image_size)
        return finish_frames([frame], image_size=self.image_size, mean=self.mean, std=self.std, train=self.train,
                             rng=rng, augment=self.augment)[0]

    def outputs(self, clips: list[Any], peaks: list[Any], labels: np.ndarray, va: np.ndarray,
                va_source: np.ndarray, soft: np.ndarray | None) -> dict[str, np.ndarray]:
        import torch

        x, mask = pad_clips(clips, self.num_frames)  # (B, T, 3, S, S), (B, T)
        out = {"frames": x.numpy(), "mask": mask.numpy(), "label": labels.astype(np.int64), "va": va,
               "peak": torch.stack(peaks).numpy(),  # (B, 3, S, S)
               "va_source": va_source}
        if self.soft_classes:
            out["soft"] = soft  # (B, C)
        return out


class DecodeClips(_ModelInputs):
    """map_batches: encoded clip rows -> fixed-shape model inputs (select frames, decode, resize, augment,
    normalise), every epoch: the streaming path, for datasets too large to keep decoded.

    Output columns: `frames (B, T, 3, S, S)` float32, `mask (B, T)` bool, `label (B,)` int64, `va (B, 2)` float32
    with NaN for missing values, `peak (B, 3, S, S)` float32 (the peak frame, for M_H), `va_source (B,)` int64
    (index into `classemo.metrics.VA_SOURCES`).
    """

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        rng = self.rng()
        clips, peaks = [], []
        for enc, peak_index in zip(batch.column("frames").to_pylist(), batch.column("peak_index").to_pylist()):
            x, _ = prepare_clip(enc, num_frames=self.num_frames, image_size=self.image_size, mean=self.mean,
                                std=self.std, train=self.train, rng=rng, augment=self.augment)
            clips.append(x)
            peaks.append(self.peak(decode_image(enc[select_peak_index(enc, peak_index)]), rng))
        soft = soft_labels(batch, self.soft_classes) if self.soft_classes else None
        return self.outputs(clips, peaks, np.asarray(batch.column("label_idx").to_pylist()), clip_va(batch),
                            _va_source_index(batch), soft)


class DecodeFrames:
    """map_batches: encoded clip rows -> every frame decoded and resized to the model's side, as uint8: what the
    decode-once cache keeps. `frames` holds one `(T_i, S, S, 3)` array per clip (ragged when clip lengths differ);
    with `soft_classes`, `soft (B, C)` too.
    """

    def __init__(self, *, image_size: int, soft_classes: int = 0) -> None:
        self.image_size, self.soft_classes = image_size, soft_classes

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        frames = [np.stack([resize_frame(decode_image(f), self.image_size) for f in enc])
                  for enc in batch.column("frames").to_pylist()]
        ragged = np.empty(len(frames), dtype=object)
        ragged[:] = frames
        peaks = [select_peak_index(clip, p) for clip, p in zip(frames, batch.column("peak_index").to_pylist())]
        out = {"frames": ragged if len({f.shape for f in frames}) > 1 else np.stack(frames),
               "peak_index": np.asarray(peaks, dtype=np.int64),
               "label": np.asarray(batch.column("label_idx").to_pylist(), dtype=np.int64), "va": clip_va(batch),
               "va_source": _va_source_index(batch)}
        if self.soft_classes:
            out["soft"] = soft_labels(batch, self.soft_classes)
        return out


class AugmentClips(_ModelInputs):
    """map_batches over `DecodeFrames`' output, every epoch: select frames, augment, normalise. The same draws and
    outputs as `DecodeClips` on the encoded rows."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rng = self.rng()
        clips, peaks = [], []
        for frames, peak_index in zip(batch["frames"], batch["peak_index"]):
            x, _ = prepare_decoded(frames, num_frames=self.num_frames, image_size=self.image_size, mean=self.mean,
                                   std=self.std, train=self.train, rng=rng, augment=self.augment)
            clips.append(x)
            peaks.append(self.peak(np.asarray(frames[int(peak_index)]), rng))
        return self.outputs(clips, peaks, batch["label"], batch["va"], batch["va_source"], batch.get("soft"))


class DecodePeaks:
    """map_batches: clip rows -> peak frames in StarGAN's [-1, 1] range: `image (B, 3, S, S)`, `label (B,)`."""

    def __init__(self, *, image_size: int, train: bool, augment: bool) -> None:
        self.image_size = image_size
        self.augment = ClipAugment(max_shift=0.03, max_scale=0.03) if (train and augment) else None

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        import torch

        rng = np.random.default_rng()

        images = []
        for enc, peak_index in zip(batch.column("frames").to_pylist(), batch.column("peak_index").to_pylist()):
            img = [decode_image(enc[select_peak_index(enc, peak_index)])]
            if self.augment is not None:
                img = self.augment(img, rng)
            images.append(frames_to_tensor(img, image_size=self.image_size, mean=GAN_MEAN, std=GAN_STD)[0])
        return {"image": torch.stack(images).numpy(),
                "label": np.asarray(batch.column("label_idx").to_pylist(), dtype=np.int64)}


def decoded_bytes(manifest: Manifest, split: str, image_size: int) -> int:
    """Size of a split's frames decoded at the model's side (uint8 RGB): what the decode-once cache holds."""
    return int(manifest.frame_counts.get(split, 0)) * image_size * image_size * 3


def cache_decision(mode: str, nbytes: int, object_store_bytes: float) -> bool:
    """Whether to decode a split once (`DataConfig.cache`): on, off, or auto (it fits in a quarter of the store).

    Raises:
        DatasetError: for another mode.
    """
    if mode not in ("auto", "on", "off"):
        raise DatasetError(f"data.cache must be auto, on or off, got {mode!r}")
    return mode == "on" or (mode == "auto" and nbytes <= 0.25 * object_store_bytes)
