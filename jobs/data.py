"""Ray Data side of the training job: open the dataset (local or s3://), read Parquet splits, decode in map_batches.

Decoding and augmentation run in Ray Data tasks with the library's own transforms (`classemo.data.transforms`),
the same ones Predictor uses, so training and serving preprocess identically.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from classemo.data.format import SPLITS, DatasetFormatError, Manifest
from classemo.data.transforms import (ClipAugment, decode_image, finish_frames,
                                      frames_to_tensor, pad_clips, prepare_clip, prepare_decoded, resize_frame)
from classemo.metrics import VA_SOURCES
from classemo.preprocessing import DEFAULT_MEAN, DEFAULT_STD, GAN_MEAN, GAN_STD

# Only what the loop needs is read from the Parquet shards.
READ_COLUMNS = ["clip_id", "frames", "peak_index", "label_idx", "valence", "arousal", "va_source"]


class DatasetError(ValueError):
    """The dataset cannot be used for training: missing, empty, unreachable or inconsistent."""


def open_filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """A picklable pyarrow filesystem for `root` and the path inside it.

    For s3:// the endpoint comes from AWS_ENDPOINT_URL (MinIO, moto, ...). Timeouts and retries are short so an
    unreachable endpoint fails in seconds rather than after botocore's minutes of retries.
    """
    if root.startswith("s3://"):
        path = root[len("s3://"):].rstrip("/")
        if not path:
            raise DatasetError(f"S3 dataset root {root!r} names no bucket")
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        kwargs: dict[str, Any] = dict(
            connect_timeout=3, request_timeout=10,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2),
            region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
        )
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        return pafs.S3FileSystem(**kwargs), path
    if "://" in root:
        raise DatasetError(f"unsupported dataset root {root!r}: use a local path or s3://bucket/prefix")
    return pafs.LocalFileSystem(), os.path.abspath(root)


@dataclass
class DatasetInfo:
    """What the driver learns about a dataset before any Ray work starts."""

    root: str
    manifest: Manifest
    filesystem: pafs.FileSystem
    path: str  # root inside `filesystem`

    def split_dir(self, split: str) -> str:
        return f"{self.path}/{split}"


def inspect_dataset(root: str, *, need: Sequence[str] = ("train", "val")) -> DatasetInfo:
    """Read and check the manifest: fails fast, with one message, on a missing, empty or unreachable dataset.

    Args:
        root: Local path or s3://bucket/prefix.
        need: Splits that must hold at least one clip.
    """
    fs, path = open_filesystem(root)
    manifest_path = f"{path}/manifest.json"
    try:
        info = fs.get_file_info(manifest_path)
    except OSError as e:
        raise DatasetError(f"cannot reach the dataset at {root}: {str(e).splitlines()[0]}") from None
    if info.type == pafs.FileType.NotFound:
        where = "" if root.startswith("s3://") or os.path.isdir(root) else " (the directory does not exist)"
        raise DatasetError(f"no dataset at {root}: {manifest_path} not found{where}")
    try:
        with fs.open_input_stream(manifest_path) as f:
            manifest = Manifest.from_json(f.read().decode())
    except (OSError, DatasetFormatError) as e:
        raise DatasetError(f"cannot read the manifest of {root}: {e}") from None
    empty = [s for s in need if manifest.counts.get(s, 0) <= 0]
    if empty:
        raise DatasetError(f"dataset {root} has no clips in split(s) {empty} (counts: {manifest.counts})")
    for split in need:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}")
    return DatasetInfo(root=root, manifest=manifest, filesystem=fs, path=path)


def read_split(info: DatasetInfo, split: str, *, limit: int = 0) -> Any:
    """`ray.data.read_parquet` of one split (lazy), only the columns the loop needs."""
    import ray.data

    # select_columns is pushed down into the Parquet read by Ray Data's optimizer.
    ds = ray.data.read_parquet(info.split_dir(split), filesystem=info.filesystem,
                               file_extensions=["parquet"]).select_columns(READ_COLUMNS)
    return ds.limit(limit) if limit > 0 else ds


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


def _va(batch: pa.Table) -> np.ndarray:
    """Clip-level (valence, arousal), NaN where the dataset has none (the loss and metrics skip NaN)."""
    cols = []
    for name in ("valence", "arousal"):
        col = batch.column(name).to_pylist() if name in batch.column_names else [None] * batch.num_rows
        cols.append([np.nan if v is None else float(v) for v in col])
    return np.asarray(cols, dtype=np.float32).T.reshape(batch.num_rows, 2)


def _peak(frames: Sequence[bytes], peak_index: int | None) -> int:
    # The dataset's annotated apex; without one the middle frame, where posed clips usually peak.
    if peak_index is not None and 0 <= peak_index < len(frames):
        return int(peak_index)
    return len(frames) // 2


def _va_source(values: Sequence[str | None]) -> np.ndarray:
    return np.asarray([VA_SOURCES.index(v or "none") for v in values], dtype=np.int64)


class _ModelInputs:
    """Shared by the streaming and the cached decoders: per-batch randomness, clip and peak tensors, padding."""

    def __init__(self, *, num_frames: int, image_size: int, train: bool, augment: bool,
                 mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD, seed: int = 0) -> None:
        self.num_frames, self.image_size, self.train = num_frames, image_size, train
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = ClipAugment() if (train and augment) else None
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
                va_source: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x, mask = pad_clips(clips, self.num_frames)  # (B, T, 3, S, S), (B, T)
        return {"frames": x.numpy(), "mask": mask.numpy(), "label": labels.astype(np.int64), "va": va,
                "peak": torch.stack(peaks).numpy(),  # (B, 3, S, S)
                "va_source": va_source}


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
            peaks.append(self.peak(decode_image(enc[_peak(enc, peak_index)]), rng))
        return self.outputs(clips, peaks, np.asarray(batch.column("label_idx").to_pylist()), _va(batch),
                            _va_source(batch.column("va_source").to_pylist()))


class DecodeFrames:
    """map_batches: encoded clip rows -> every frame decoded and resized to the model's side, as uint8: what the
    decode-once cache keeps. `frames` holds one `(T_i, S, S, 3)` array per clip (ragged when clip lengths differ).
    """

    def __init__(self, *, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        frames = [np.stack([resize_frame(decode_image(f), self.image_size) for f in enc])
                  for enc in batch.column("frames").to_pylist()]
        ragged = np.empty(len(frames), dtype=object)
        ragged[:] = frames
        peaks = [_peak(enc, p) for enc, p in zip(frames, batch.column("peak_index").to_pylist())]
        return {"frames": ragged if len({f.shape for f in frames}) > 1 else np.stack(frames),
                "peak_index": np.asarray(peaks, dtype=np.int64),
                "label": np.asarray(batch.column("label_idx").to_pylist(), dtype=np.int64), "va": _va(batch),
                "va_source": _va_source(batch.column("va_source").to_pylist())}


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
        return self.outputs(clips, peaks, batch["label"], batch["va"], batch["va_source"])


class DecodePeaks:
    """map_batches: clip rows -> peak frames in [-1, 1] for StarGAN: `image (B, 3, S, S)`, `label (B,)`."""

    def __init__(self, *, image_size: int, train: bool, augment: bool) -> None:
        self.image_size = image_size
        self.augment = ClipAugment(max_shift=0.03, max_scale=0.03) if (train and augment) else None

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        import torch

        rng = np.random.default_rng()

        images = []
        for enc, peak_index in zip(batch.column("frames").to_pylist(), batch.column("peak_index").to_pylist()):
            img = [decode_image(enc[_peak(enc, peak_index)])]
            if self.augment is not None:
                img = self.augment(img, rng)
            images.append(frames_to_tensor(img, image_size=self.image_size, mean=GAN_MEAN, std=GAN_STD)[0])
        return {"image": torch.stack(images).numpy(),
                "label": np.asarray(batch.column("label_idx").to_pylist(), dtype=np.int64)}


def clip_pipeline(ds: Any, *, num_frames: int, image_size: int, train: bool, augment: bool, map_batch_size: int,
                  mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD,
                  cache: bool = False) -> Any:
    """Decode stage for the unified model. Training rows are shuffled per epoch by the iterator's buffer.

    With `cache`, the split is read and decoded once, here (`DecodeFrames`, materialised in the object store), and
    each epoch only selects frames, augments and normalises (`AugmentClips`); without it every epoch reads and
    decodes the encoded rows (`DecodeClips`, lazy). The decoders run as stateless tasks (an instance, not a class):
    an actor pool would hold its CPUs even when idle, and with train plus one validation dataset per rank, idle
    pools starve the other datasets' reads.
    """
    kwargs = dict(num_frames=num_frames, image_size=image_size, train=train, augment=augment, mean=mean, std=std)
    if not cache:
        return ds.map_batches(DecodeClips(**kwargs), batch_size=map_batch_size, batch_format="pyarrow", num_cpus=1)
    decoded = ds.map_batches(DecodeFrames(image_size=image_size), batch_size=map_batch_size, batch_format="pyarrow",
                             num_cpus=1).materialize()
    return decoded.map_batches(AugmentClips(**kwargs), batch_size=map_batch_size, batch_format="numpy", num_cpus=1)


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


def peak_pipeline(ds: Any, *, image_size: int, train: bool, augment: bool, map_batch_size: int) -> Any:
    """Lazy decode stage for StarGAN (peak frames only)."""
    return ds.map_batches(DecodePeaks(image_size=image_size, train=train, augment=augment),
                          batch_size=map_batch_size, batch_format="pyarrow", num_cpus=1)


def val_shards(ds: Any, world_size: int) -> dict[str, Any]:
    """One validation dataset per rank (`val_0`, `val_1`, ...), split by clip id before decoding.

    Ray Train's own split is `equal=True`, which drops rows to balance workers; validation must see every clip
    exactly once, and evaluation needs no DDP lock-step, so each rank gets its own exact shard instead.
    """
    return {f"val_{r}": ds.map_batches(KeepShard(r, world_size), batch_format="pyarrow", num_cpus=0.25)
            for r in range(world_size)}


def first_rows(info: DatasetInfo, split: str, num_rows: int) -> pa.Table:
    """The first rows of a split's first shard (input examples, sample grids), read without Ray."""
    import pyarrow.parquet as pq

    files = sorted(f.path for f in info.filesystem.get_file_info(pafs.FileSelector(info.split_dir(split)))
                   if f.path.endswith(".parquet"))
    if not files:
        raise DatasetError(f"split {split!r} of {info.root} has no Parquet shards")
    return pq.read_table(files[0], columns=READ_COLUMNS, filesystem=info.filesystem).slice(0, num_rows)


def first_clip_frames(info: DatasetInfo, split: str) -> list[bytes]:
    """Encoded frames of the first clip of a split (the MLflow input example)."""
    return list(first_rows(info, split, 1).column("frames")[0].as_py())
