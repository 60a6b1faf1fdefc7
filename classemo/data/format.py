"""The frame-sequence dataset format: Parquet shards, one folder per split, plus `manifest.json`.

Layout (root is a local path or `s3://bucket/prefix`, the S3 endpoint coming from `AWS_ENDPOINT_URL`)::

    <root>/manifest.json
    <root>/train/part-00000.parquet ...
    <root>/val/part-00000.parquet ...
    <root>/test/part-00000.parquet ...

One row is one clip; a static image is a 1-frame clip. See docs/data-format.md.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from classemo.labels import LabelSet

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")
VA_SOURCES: tuple[str, ...] = ("annotated", "derived", "none")
MANIFEST_NAME = "manifest.json"
DEFAULT_SHARD_ROWS = 256  # ~16 frames x 112 px PNG per clip keeps a shard near 100 MB at most

SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("subject_id", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("frames", pa.list_(pa.binary()), nullable=False),
        pa.field("fps", pa.float32(), nullable=False),
        pa.field("peak_index", pa.int32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("label_idx", pa.int32(), nullable=False),
        pa.field("valence", pa.float32()),
        pa.field("arousal", pa.float32()),
        pa.field("frame_valence", pa.list_(pa.float32())),
        pa.field("frame_arousal", pa.list_(pa.float32())),
        pa.field("va_source", pa.string(), nullable=False),
        # Soft label: one probability per label of the manifest's label list (class-index order), e.g. FER+'s ten
        # crowd votes mapped onto the label set (Barsoum et al., ICMI 2016). Null for data with one label per clip;
        # shards written before the column existed read it as null.
        pa.field("soft_label", pa.list_(pa.float32())),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
_OPTIONAL_COLUMNS = frozenset({"subject_id", "valence", "arousal", "frame_valence", "frame_arousal", "soft_label"})


class DatasetFormatError(ValueError):
    """A row, manifest or path that does not follow the dataset contract."""


@dataclass
class Manifest:
    """What `manifest.json` holds: everything a reader needs without opening a shard."""

    labels: list[dict]  # LabelSet.to_list(): name, polarity, default valence/arousal, in class-index order
    image_size: int  # side of the square face crops, in pixels
    counts: dict[str, int]  # clips per split
    converter_version: str  # which converter (and its version) wrote the data, e.g. "images/1"
    source: str  # where the data came from, e.g. "faces-muxspace" or "synth"
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> label -> clips
    frame_counts: dict[str, int] = field(default_factory=dict)  # frames per split, all clips together
    shards: dict[str, list[str]] = field(default_factory=dict)  # split -> shard file names, in order
    extra: dict[str, Any] = field(default_factory=dict)  # converter summary, label map, split seed, ...
    face: dict[str, Any] | None = None  # FaceSettings.to_dict() of the crops; None: written before they existed
    format_version: int = FORMAT_VERSION

    @property
    def label_set(self) -> LabelSet:
        return LabelSet.from_list(self.labels)

    @property
    def num_clips(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"manifest.json is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise DatasetFormatError("manifest.json must hold a JSON object")
        required = ("labels", "image_size", "counts", "converter_version", "source")
        missing = [k for k in required if k not in data]
        if missing:
            raise DatasetFormatError(f"manifest.json lacks required keys {missing}")
        if data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise DatasetFormatError(
                f"manifest format_version {data['format_version']} is newer than this reader ({FORMAT_VERSION})"
            )
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _s3_filesystem() -> pafs.FileSystem:
    """pyarrow filesystem over s3fs, pointed at AWS_ENDPOINT_URL when it is set (MinIO, moto, ...)."""
    import s3fs

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    # Listings are not cached (a dataset may be rewritten by another process between two reads); the instance is
    # (s3fs caches it per endpoint), since creating a session costs far more than any small read.
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, use_listings_cache=False)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def open_filesystem(root: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """Filesystem and in-filesystem path for a dataset root.

    Args:
        root: Local path or `s3://bucket/prefix`.

    Returns:
        `(filesystem, path)`: for S3 the path is `bucket/prefix`, locally an absolute path.
    """
    root = str(root)
    if root.startswith("s3://"):
        path = root[len("s3://"):].rstrip("/")
        if not path:
            raise DatasetFormatError(f"S3 root {root!r} names no bucket")
        return _s3_filesystem(), path
    if "://" in root:
        raise DatasetFormatError(f"unsupported dataset root {root!r}: use a local path or s3://bucket/prefix")
    return pafs.LocalFileSystem(), os.path.abspath(root)


def split_path(root: str | os.PathLike, split: str) -> str:
    """URI of one split's shard folder, e.g. for `ray.data.read_parquet(split_path(root, "train"))`."""
    if split not in SPLITS:
        raise DatasetFormatError(f"unknown split {split!r}; expected one of {SPLITS}")
    root = str(root)
    if root.startswith("s3://"):
        return f"{root.rstrip('/')}/{split}"
    return os.path.join(os.path.abspath(root), split)


def _is_image_bytes(data: bytes) -> bool:
    return data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff"


def _check_va_list(clip: str, name: str, values: Any, num_frames: int) -> list[float] | None:
    if values is None:
        return None
    values = [float(v) for v in values]
    if len(values) != num_frames:
        raise DatasetFormatError(f"clip {clip!r}: {name} has {len(values)} values but the clip has {num_frames} frames")
    bad = [v for v in values if not (-1.0 <= v <= 1.0)]
    if bad:
        raise DatasetFormatError(f"clip {clip!r}: {name} values must lie in [-1, 1], got {bad[:5]}")
    return values


def _check_soft_label(clip: str, values: Any, labels: LabelSet) -> list[float] | None:
    if values is None:
        return None
    values = [float(v) for v in values]
    if len(values) != len(labels.names):
        raise DatasetFormatError(f"clip {clip!r}: soft_label has {len(values)} values but the label set has "
                                 f"{len(labels.names)} labels")
    if not all(math.isfinite(v) and v >= 0.0 for v in values) or abs(sum(values) - 1.0) > 1e-3:
        raise DatasetFormatError(f"clip {clip!r}: soft_label must be non-negative and sum to 1, got {values}")
    return values


def validate_row(row: dict, labels: LabelSet) -> dict:
    """Check one row against the contract and return it normalised (types, optional columns filled).

    Raises:
        DatasetFormatError: naming the clip and the problem.
    """
    clip = row.get("clip_id")
    if not isinstance(clip, str) or not clip:
        raise DatasetFormatError(f"every row needs a non-empty string clip_id, got {clip!r}")
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise DatasetFormatError(f"clip {clip!r}: unknown columns {unknown}; the schema has {list(COLUMNS)}")
    missing = [c for c in COLUMNS if c not in row and c not in _OPTIONAL_COLUMNS]
    if missing:
        raise DatasetFormatError(f"clip {clip!r}: missing columns {missing}")
    if row["split"] not in SPLITS:
        raise DatasetFormatError(f"clip {clip!r}: split {row['split']!r} is not one of {SPLITS}")
    frames = row["frames"]
    if not isinstance(frames, (list, tuple)) or not frames:
        raise DatasetFormatError(f"clip {clip!r}: frames must be a non-empty list of encoded images")
    for i, f in enumerate(frames):
        if not isinstance(f, (bytes, bytearray, memoryview)) or not _is_image_bytes(bytes(f[:8])):
            raise DatasetFormatError(f"clip {clip!r}: frame {i} is not PNG or JPEG bytes")
    n = len(frames)
    label = row["label"]
    if label not in labels.names:
        raise DatasetFormatError(f"clip {clip!r}: label {label!r} is not in the label set {list(labels.names)}")
    if int(row["label_idx"]) != labels.index(label):
        raise DatasetFormatError(
            f"clip {clip!r}: label_idx {row['label_idx']} does not match label {label!r} "
            f"(index {labels.index(label)} in {list(labels.names)})"
        )
    peak = int(row["peak_index"])
    if not 0 <= peak < n:
        raise DatasetFormatError(f"clip {clip!r}: peak_index {peak} is outside 0..{n - 1}")
    fps = float(row["fps"])
    if not (fps > 0 and math.isfinite(fps)):
        raise DatasetFormatError(f"clip {clip!r}: fps must be a positive number, got {row['fps']!r}")
    va_source = row["va_source"]
    if va_source not in VA_SOURCES:
        raise DatasetFormatError(f"clip {clip!r}: va_source {va_source!r} is not one of {VA_SOURCES}")
    valence, arousal = row.get("valence"), row.get("arousal")
    if (valence is None) != (arousal is None):
        raise DatasetFormatError(f"clip {clip!r}: valence and arousal must both be set or both be null")
    if va_source == "none" and valence is not None:
        raise DatasetFormatError(f"clip {clip!r}: va_source 'none' but valence/arousal are set")
    if va_source != "none" and valence is None:
        raise DatasetFormatError(f"clip {clip!r}: va_source {va_source!r} needs valence and arousal")
    for name, v in (("valence", valence), ("arousal", arousal)):
        if v is not None and not -1.0 <= float(v) <= 1.0:
            raise DatasetFormatError(f"clip {clip!r}: {name} {v} is outside [-1, 1]")
    subject = row.get("subject_id")
    return {
        "clip_id": clip,
        "subject_id": None if subject is None else str(subject),
        "source": str(row["source"]),
        "split": row["split"],
        "frames": [bytes(f) for f in frames],
        "fps": fps,
        "peak_index": peak,
        "label": label,
        "label_idx": int(row["label_idx"]),
        "valence": None if valence is None else float(valence),
        "arousal": None if arousal is None else float(arousal),
        "frame_valence": _check_va_list(clip, "frame_valence", row.get("frame_valence"), n),
        "frame_arousal": _check_va_list(clip, "frame_arousal", row.get("frame_arousal"), n),
        "va_source": va_source,
        "soft_label": _check_soft_label(clip, row.get("soft_label"), labels),
    }


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def write_dataset(
    rows: Iterable[dict],
    root: str | os.PathLike,
    labels: LabelSet,
    *,
    image_size: int,
    source: str,
    converter_version: str,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    extra: dict[str, Any] | None = None,
    face: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> Manifest:
    """Validate rows and write them as Parquet shards per split, then `manifest.json` last.

    Rows are streamed: at most `shard_rows` rows per split are held in memory. The manifest is written only
    after every shard, so a root with a manifest is complete. Every split gets at least one (possibly empty)
    shard, so `ray.data.read_parquet(split_path(root, split))` always works.

    Args:
        rows: Dicts with the columns of `SCHEMA` (optional: subject_id, valence, arousal, frame_valence,
            frame_arousal, soft_label).
        root: Local path or `s3://bucket/prefix`.
        labels: The label set; `label_idx` must equal `labels.index(label)`.
        image_size: Side of the square face crops, recorded in the manifest.
        source: Dataset origin, recorded in the manifest.
        converter_version: Writer name and version, recorded in the manifest.
        shard_rows: Rows per Parquet file.
        extra: Free-form information for the manifest (converter summary, label map, split seed).
        face: How the crops were made (`FaceSettings.to_dict()`), so a model trained on them crops the same way.
        overwrite: Replace an existing dataset at root; when False an existing manifest is an error.

    Returns:
        The manifest that was written.

    Raises:
        DatasetFormatError: a row breaks the contract (nothing is committed: no manifest is written).
    """
    if shard_rows < 1:
        raise DatasetFormatError(f"shard_rows must be >= 1, got {shard_rows}")
    fs, base = open_filesystem(root)
    manifest_path = _join(base, MANIFEST_NAME)
    if fs.get_file_info(manifest_path).type != pafs.FileType.NotFound:
        if not overwrite:
            raise DatasetFormatError(f"{root} already holds a dataset (manifest.json); pass overwrite=True")
        fs.delete_file(manifest_path)
    for split in SPLITS:
        if fs.get_file_info(_join(base, split)).type == pafs.FileType.Directory:
            fs.delete_dir(_join(base, split))
        fs.create_dir(_join(base, split), recursive=True)

    buffers: dict[str, list[dict]] = {s: [] for s in SPLITS}
    shards: dict[str, list[str]] = {s: [] for s in SPLITS}
    counts = {s: 0 for s in SPLITS}
    frame_counts = {s: 0 for s in SPLITS}
    label_counts: dict[str, dict[str, int]] = {s: {n: 0 for n in labels.names} for s in SPLITS}
    seen: set[str] = set()

    def flush(split: str) -> None:
        name = f"part-{len(shards[split]):05d}.parquet"
        table = pa.Table.from_pylist(buffers[split], schema=SCHEMA)
        pq.write_table(table, _join(base, split, name), filesystem=fs)
        shards[split].append(name)
        buffers[split].clear()

    for raw in rows:
        row = validate_row(raw, labels)
        if row["clip_id"] in seen:
            raise DatasetFormatError(f"duplicate clip_id {row['clip_id']!r}")
        seen.add(row["clip_id"])
        split = row["split"]
        buffers[split].append(row)
        counts[split] += 1
        frame_counts[split] += len(row["frames"])
        label_counts[split][row["label"]] += 1
        if len(buffers[split]) >= shard_rows:
            flush(split)
    for split in SPLITS:
        if buffers[split] or not shards[split]:
            flush(split)

    manifest = Manifest(
        labels=labels.to_list(),
        image_size=int(image_size),
        counts=counts,
        converter_version=converter_version,
        source=source,
        label_counts=label_counts,
        frame_counts=frame_counts,
        shards=shards,
        extra=dict(extra or {}),
        face=dict(face) if face else None,
    )
    with fs.open_output_stream(manifest_path) as f:
        f.write(manifest.to_json().encode())
    return manifest


def read_manifest(root: str | os.PathLike) -> Manifest:
    """Read `<root>/manifest.json`.

    Raises:
        DatasetFormatError: no dataset at root, or the manifest is malformed.
    """
    fs, base = open_filesystem(root)
    path = _join(base, MANIFEST_NAME)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise DatasetFormatError(f"no dataset at {root}: {MANIFEST_NAME} not found")
    with fs.open_input_stream(path) as f:
        return Manifest.from_json(f.read().decode())


def read_split(root: str | os.PathLike, split: str) -> pa.Table:
    """Read one split into a single pyarrow Table with `SCHEMA`, rows in the order they were written."""
    if split not in SPLITS:
        raise DatasetFormatError(f"unknown split {split!r}; expected one of {SPLITS}")
    manifest = read_manifest(root)
    fs, base = open_filesystem(root)
    split_dir = _join(base, split)
    names = manifest.shards.get(split)
    if names is None:  # older writers without a shard list: fall back on the sorted folder listing
        infos = fs.get_file_info(pafs.FileSelector(split_dir))
        names = sorted(i.base_name for i in infos if i.base_name.endswith(".parquet"))
    tables = [pq.read_table(_join(split_dir, n), filesystem=fs, schema=SCHEMA) for n in names]
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables(tables)
