"""The training decoders as plain functions: decode shapes, the decode-once cache, exact validation sharding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from classemo.data.batches import (AugmentClips, DecodeClips, DecodeFrames, DecodePeaks, KeepShard, cache_decision,
                                   decoded_bytes, shard_of)
from classemo.data.dataset import READ_COLUMNS, DatasetError, inspect_dataset


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


@pytest.mark.parametrize("train", [False, True])
def test_decode_once_cache_gives_what_streaming_gives(rows, train: bool) -> None:
    """Cached path (decode once, then select + augment + normalise per epoch) against the streaming decoder: equal
    for evaluation; for training the same draws, given the same random stream."""
    kwargs = dict(num_frames=3, image_size=24, train=train, augment=True)
    cached = DecodeFrames(image_size=24)(rows)
    assert cached["frames"].dtype == np.uint8 and cached["frames"].shape == (5, 4, 24, 24, 3)
    stream, again = DecodeClips(**kwargs), AugmentClips(**kwargs)
    if train:  # a seeded stream on both sides (the job draws fresh entropy per batch)
        stream.rng = again.rng = lambda: np.random.default_rng(7)  # type: ignore[method-assign]
    a, b = stream(rows), again(cached)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_cache_is_chosen_by_size(tiny_dataset: Path) -> None:
    manifest = inspect_dataset(str(tiny_dataset)).manifest
    nbytes = decoded_bytes(manifest, "train", 48)
    assert nbytes == manifest.frame_counts["train"] * 48 * 48 * 3
    assert cache_decision("auto", nbytes, 4 * nbytes) and not cache_decision("auto", nbytes, 3 * nbytes)
    assert cache_decision("on", nbytes, 0) and not cache_decision("off", nbytes, 1e12)
    with pytest.raises(DatasetError, match="data.cache must be auto, on or off"):
        cache_decision("sometimes", nbytes, 1e12)


def test_validation_shards_cover_every_clip_exactly_once(rows) -> None:
    ids = rows.column("clip_id").to_pylist()
    parts = [KeepShard(r, 3)(rows).column("clip_id").to_pylist() for r in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids)
    assert list(shard_of(ids, 3)) == list(shard_of(ids, 3))  # stable, not Python's salted hash


def test_soft_labels_travel_through_both_decoders_as_nan_rows_where_missing(rows) -> None:
    import pyarrow as pa

    from classemo.data.batches import soft_labels

    votes = [[0.5, 0.5, 0, 0, 0, 0, 0], None, [0, 0, 1.0, 0, 0, 0, 0], None, [0.1, 0, 0, 0, 0, 0.9, 0]]
    with_soft = rows.append_column("soft_label", pa.array(votes, pa.list_(pa.float32())))
    kwargs = dict(num_frames=3, image_size=24, train=False, augment=False, soft_classes=7)
    a = DecodeClips(**kwargs)(with_soft)
    b = AugmentClips(**kwargs)(DecodeFrames(image_size=24, soft_classes=7)(with_soft))
    for out in (a, b):
        assert out["soft"].shape == (5, 7) and out["soft"].dtype == np.float32
        np.testing.assert_allclose(out["soft"][0], votes[0])
        assert np.isnan(out["soft"][1]).all() and np.isnan(out["soft"][3]).all()
    assert "soft" not in DecodeClips(num_frames=3, image_size=24, train=False, augment=False)(with_soft)
    with pytest.raises(DatasetError, match="no soft_label column"):
        soft_labels(rows, 7)
    with pytest.raises(DatasetError, match="7 values, the label set 3"):
        soft_labels(with_soft, 3)
