"""Ray Data side of the training job: read Parquet splits and map the library's decoders over them.

The decoders, the dataset checks and the shard rule are plain library code (`classemo.data.batches`,
`classemo.data.dataset`); this module holds only what calls Ray Data.
"""

from __future__ import annotations

from typing import Any, Sequence

from classemo.data.batches import AugmentClips, DecodeClips, DecodeFrames, DecodePeaks, KeepShard
from classemo.data.dataset import READ_COLUMNS, DatasetInfo
from classemo.preprocessing import DEFAULT_MEAN, DEFAULT_STD


def read_split(info: DatasetInfo, split: str, *, limit: int = 0, soft_labels: bool = False) -> Any:
    """`ray.data.read_parquet` of one split (lazy), only the columns the loop needs (`soft_label` too if asked).

    The training split's files are read in a new random order each epoch: a merged dataset holds its sources in
    separate shards, and in file order each epoch would end on one source alone (its batches last to move the
    weights and BatchNorm's running statistics).
    """
    import ray.data

    columns = READ_COLUMNS + (["soft_label"] if soft_labels else [])
    # select_columns is pushed down into the Parquet read by Ray Data's optimizer.
    ds = ray.data.read_parquet(info.split_dir(split), filesystem=info.filesystem, file_extensions=["parquet"],
                               shuffle="files" if split == "train" else None).select_columns(columns)
    return ds.limit(limit) if limit > 0 else ds


def clip_pipeline(ds: Any, *, num_frames: int, image_size: int, train: bool, augment: bool, map_batch_size: int,
                  mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD,
                  cache: bool = False, soft_classes: int = 0, classroom: bool = False) -> Any:
    """Decode stage for the unified model. Training rows are shuffled per epoch by the iterator's buffer.

    With `cache`, the split is read and decoded once, here (`DecodeFrames`, materialised in the object store), and
    each epoch only selects frames, augments and normalises (`AugmentClips`); without it every epoch reads and
    decodes the encoded rows (`DecodeClips`, lazy). The decoders run as stateless tasks (an instance, not a class):
    an actor pool would hold its CPUs even when idle, and with train plus one validation dataset per rank, idle
    pools starve the other datasets' reads. `classroom` adds `ClassroomAugment` to training clips' augmentation.
    """
    kwargs = dict(num_frames=num_frames, image_size=image_size, train=train, augment=augment, mean=mean, std=std,
                  soft_classes=soft_classes, classroom=classroom)
    if not cache:
        return ds.map_batches(DecodeClips(**kwargs), batch_size=map_batch_size, batch_format="pyarrow", num_cpus=1)
    decoded = ds.map_batches(DecodeFrames(image_size=image_size, soft_classes=soft_classes), batch_size=map_batch_size,
                             batch_format="pyarrow", num_cpus=1).materialize()
    if train:  # the decoded blocks in a new order each epoch (a block is map_batch_size clips of one or two shards)
        decoded = decoded.randomize_block_order()
    return decoded.map_batches(AugmentClips(**kwargs), batch_size=map_batch_size, batch_format="numpy", num_cpus=1)


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
