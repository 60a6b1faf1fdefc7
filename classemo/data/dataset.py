"""A training dataset as the job's driver sees it: the filesystem it lives on, its checked manifest, a few rows.

Everything here is plain pyarrow, so the checks that make a job fail fast (missing, empty or unreachable data) and
the identity of a validation split can be tested without Ray; `jobs/data.py` builds its Ray Data reads on top.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.fs as pafs

from classemo.data.format import SPLITS, DatasetFormatError, Manifest

# Only what the training loop needs is read from the Parquet shards.
READ_COLUMNS = ["clip_id", "frames", "peak_index", "label_idx", "valence", "arousal", "va_source"]


class DatasetError(ValueError):
    """The dataset cannot be used for training: missing, empty, unreachable or inconsistent."""


def open_filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """A picklable pyarrow filesystem for `root` and the path inside it.

    Unlike `classemo.data.format.open_filesystem` (s3fs, for the converters), this one is pyarrow's own S3 client:
    Ray Data pickles it into every read task. For s3:// the endpoint comes from AWS_ENDPOINT_URL (MinIO, moto, ...).
    Timeouts and retries are short so an unreachable endpoint fails in seconds rather than after botocore's minutes
    of retries.

    Raises:
        DatasetError: For an S3 root without a bucket or a scheme other than s3://.
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

    def shard_files(self, split: str) -> list[str]:
        """The split's Parquet shards, sorted."""
        return sorted(f.path for f in self.filesystem.get_file_info(pafs.FileSelector(self.split_dir(split)))
                      if f.path.endswith(".parquet"))

    def has_column(self, name: str, split: str = "train") -> bool:
        """Whether the split's shards have column `name` (shards written before an optional column was added lack it).
        """
        import pyarrow.parquet as pq

        files = self.shard_files(split)
        return bool(files) and name in pq.read_schema(files[0], filesystem=self.filesystem).names


def inspect_dataset(root: str, *, need: Sequence[str] = ("train", "val")) -> DatasetInfo:
    """Read and check the manifest: fails fast, with one message, on a missing, empty or unreachable dataset.

    Args:
        root: Local path or s3://bucket/prefix.
        need: Splits that must hold at least one clip.

    Raises:
        DatasetError: Naming what is wrong with the dataset.
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


def split_digest(info: DatasetInfo, split: str) -> str:
    """A fingerprint of one split's data: the whole manifest (counts, shard names, labels, face settings, converter)
    plus the size of each of the split's shards, so a dataset rewritten with the same counts gets another one.

    MLflow's dataset inputs carry it, and registered versions carry it inside `split_id`.
    """
    try:
        shards = sorted((Path(f.path).name, f.size) for f in info.filesystem.get_file_info(
            pafs.FileSelector(info.split_dir(split), allow_not_found=True)) if f.path.endswith(".parquet"))
    except OSError as e:
        raise DatasetError(f"cannot list split {split!r} of {info.root}: {str(e).splitlines()[0]}") from None
    blob = json.dumps({"manifest": dataclasses.asdict(info.manifest), "split": split, "shards": shards},
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


NO_SOFT_LABELS = ("unified.soft_labels is on but {root} has no soft_label column (converters that keep annotators' "
                  "votes write it: classemo data convert ferplus)")


def require_soft_labels(info: DatasetInfo) -> None:
    """Fail fast, before any Ray work, when a run asks for soft labels from a dataset without them.

    Raises:
        DatasetError: naming the dataset and the converter that writes the column.
    """
    if not info.has_column("soft_label"):
        raise DatasetError(NO_SOFT_LABELS.format(root=info.root))


def split_id(info: DatasetInfo, split: str) -> str:
    """Identity of a split: its root and `split_digest`.

    Registered models carry it, so two scores are compared only when they were measured on the same clips.
    """
    return f"{info.root}#{split}:{split_digest(info, split)}"


def first_rows(info: DatasetInfo, split: str, num_rows: int) -> pa.Table:
    """The first rows of a split's first shard (input examples, sample grids), read without Ray.

    Raises:
        DatasetError: When the split has no Parquet shard.
    """
    import pyarrow.parquet as pq

    files = info.shard_files(split)
    if not files:
        raise DatasetError(f"split {split!r} of {info.root} has no Parquet shards")
    return pq.read_table(files[0], columns=READ_COLUMNS, filesystem=info.filesystem).slice(0, num_rows)


def first_clip_frames(info: DatasetInfo, split: str) -> list[bytes]:
    """Encoded frames of the first clip of a split (the MLflow input example)."""
    return list(first_rows(info, split, 1).column("frames")[0].as_py())
