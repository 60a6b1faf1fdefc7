"""The driver's view of a dataset without Ray: manifest checks that fail fast, the split identity, the first rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from classemo.data.dataset import DatasetError, first_clip_frames, inspect_dataset, split_id


def test_inspect_dataset_reads_the_manifest(tiny_dataset: Path) -> None:
    info = inspect_dataset(str(tiny_dataset))
    assert info.manifest.counts["train"] > 0 and len(info.manifest.label_set) == 7


def test_inspect_dataset_rejects_other_schemes() -> None:
    with pytest.raises(DatasetError, match="unsupported dataset root"):
        inspect_dataset("gs://bucket/x")


def test_split_id_names_the_root_and_changes_with_the_content(tiny_dataset: Path) -> None:
    info = inspect_dataset(str(tiny_dataset))
    val, test = split_id(info, "val"), split_id(info, "test")
    assert val.startswith(f"{tiny_dataset}#val:") and val == split_id(inspect_dataset(str(tiny_dataset)), "val")
    assert val.split(":")[-1] != test.split(":")[-1]
    info.manifest.counts = {**info.manifest.counts, "val": info.manifest.counts["val"] + 1}
    assert split_id(info, "val") != val  # another clip count is another split


def test_first_clip_frames_are_the_encoded_frames_of_one_clip(tiny_dataset: Path) -> None:
    frames = first_clip_frames(inspect_dataset(str(tiny_dataset)), "val")
    assert len(frames) == 4 and all(f[:4] == b"\x89PNG" or f[:2] == b"\xff\xd8" for f in frames)


def test_has_column_reads_the_shards_schema(tiny_dataset: Path, tmp_path: Path) -> None:
    """The job asks before reading soft labels: shards written before the column existed lack it."""
    import shutil

    import pyarrow.parquet as pq

    assert inspect_dataset(str(tiny_dataset)).has_column("soft_label")
    old = tmp_path / "old"
    shutil.copytree(tiny_dataset, old)
    for shard in (old / "train").glob("*.parquet"):
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns(["soft_label"]), shard)
    info = inspect_dataset(str(old))
    assert not info.has_column("soft_label") and info.has_column("frames")
    from classemo.data.dataset import require_soft_labels

    require_soft_labels(inspect_dataset(str(tiny_dataset)))
    with pytest.raises(DatasetError, match=f"{old} has no soft_label column"):
        require_soft_labels(info)
