"""The job's Ray Data pieces as plain functions: decode shapes, exact validation sharding, manifest checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.data import READ_COLUMNS, DatasetError, DecodeClips, DecodePeaks, KeepShard, inspect_dataset, shard_of


@pytest.fixture(scope="module")
def rows(tiny_dataset: Path):
    files = sorted((tiny_dataset / "train").glob("*.parquet"))
    return pq.read_table(files[0], columns=READ_COLUMNS).slice(0, 5)


def test_decode_clips_gives_fixed_shape_model_inputs(rows) -> None:
    out = DecodeClips(num_frames=6, image_size=24, train=True, augment=True)(rows)
    assert out["frames"].shape == (5, 6, 3, 24, 24) and out["frames"].dtype == np.float32
    assert out["mask"].shape == (5, 6) and out["mask"][:, :4].all() and not out["mask"][:, 4:].any()
    assert out["peak"].shape == (5, 3, 24, 24)
    assert out["va"].shape == (5, 2) and out["label"].dtype == np.int64
    assert out["va_source"].shape == (5,)


def test_eval_decoding_is_deterministic_and_peaks_lie_in_gan_range(rows) -> None:
    a = DecodeClips(num_frames=4, image_size=32, train=False, augment=True)(rows)
    b = DecodeClips(num_frames=4, image_size=32, train=False, augment=True)(rows)
    np.testing.assert_array_equal(a["frames"], b["frames"])
    peaks = DecodePeaks(image_size=32, train=False, augment=False)(rows)["image"]
    assert peaks.min() >= -1.0 and peaks.max() <= 1.0


def test_validation_shards_cover_every_clip_exactly_once(rows) -> None:
    ids = rows.column("clip_id").to_pylist()
    parts = [KeepShard(r, 3)(rows).column("clip_id").to_pylist() for r in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids)
    assert list(shard_of(ids, 3)) == list(shard_of(ids, 3))  # stable, not Python's salted hash


def test_inspect_dataset_reads_the_manifest(tiny_dataset: Path) -> None:
    info = inspect_dataset(str(tiny_dataset))
    assert info.manifest.counts["train"] > 0 and len(info.manifest.label_set) == 7


def test_inspect_dataset_rejects_other_schemes() -> None:
    with pytest.raises(DatasetError, match="unsupported dataset root"):
        inspect_dataset("gs://bucket/x")
