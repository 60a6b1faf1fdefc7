"""The Parquet + manifest dataset format: round trip (local and real S3 on loopback) and validation on write."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow.fs as pafs
import pytest

from classemo.data.format import (
    SCHEMA,
    SPLITS,
    DatasetFormatError,
    Manifest,
    open_filesystem,
    read_manifest,
    read_split,
    split_path,
    write_dataset,
)
from classemo.labels import LabelSet

LABELS = LabelSet.paper()


def _png(seed: int, size: int = 16) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _jpeg(seed: int, size: int = 16) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def make_rows(n: int = 9) -> list[dict]:
    rows = []
    for i in range(n):
        label = LABELS.names[i % len(LABELS)]
        num_frames = 1 + i % 4
        annotated = i % 3 == 0
        rows.append(
            {
                "clip_id": f"clip{i:03d}",
                "subject_id": None if i % 5 == 0 else f"s{i % 3}",
                "source": "unit",
                "split": SPLITS[i % 3],
                "frames": [(_png if j % 2 else _jpeg)(100 * i + j) for j in range(num_frames)],
                "fps": 10.0,
                "peak_index": num_frames - 1,
                "label": label,
                "label_idx": LABELS.index(label),
                "valence": 0.25 if annotated else LABELS.default_va[label][0],
                "arousal": -0.5 if annotated else LABELS.default_va[label][1],
                "frame_valence": [0.25] * num_frames if annotated else None,
                "frame_arousal": [-0.5] * num_frames if annotated else None,
                "va_source": "annotated" if annotated else "derived",
            }
        )
    return rows


def _assert_round_trip(root: str, rows: list[dict]) -> None:
    manifest = write_dataset(iter(rows), root, LABELS, image_size=16, source="unit", converter_version="test/1",
                             shard_rows=2)
    assert read_manifest(root) == manifest
    assert manifest.counts == {s: sum(r["split"] == s for r in rows) for s in SPLITS}
    assert manifest.label_set == LABELS
    got = {}
    for split in SPLITS:
        table = read_split(root, split)
        assert table.schema.equals(SCHEMA)
        assert table.num_rows == manifest.counts[split]
        for r in table.to_pylist():
            got[r["clip_id"]] = r
    assert set(got) == {r["clip_id"] for r in rows}
    for r in rows:
        back = got[r["clip_id"]]
        assert back["frames"] == r["frames"]  # byte for byte
        for key in ("subject_id", "split", "label", "label_idx", "peak_index", "va_source", "source"):
            assert back[key] == r[key], key
        assert back["valence"] == pytest.approx(r["valence"])
        if r["frame_valence"] is None:
            assert back["frame_valence"] is None and back["frame_arousal"] is None
        else:
            assert back["frame_arousal"] == pytest.approx(r["frame_arousal"])


def test_round_trip_local(tmp_path):
    rows = make_rows()
    _assert_round_trip(str(tmp_path / "ds"), rows)
    manifest = read_manifest(tmp_path / "ds")
    # 3 rows per split at 2 rows per shard: 2 shards each, named in order.
    assert manifest.shards == {s: ["part-00000.parquet", "part-00001.parquet"] for s in SPLITS}
    assert (tmp_path / "ds" / "train" / "part-00001.parquet").is_file()
    assert split_path(tmp_path / "ds", "val") == str(tmp_path / "ds" / "val")


def test_rewrite_replaces_old_shards(tmp_path):
    root = str(tmp_path / "ds")
    write_dataset(make_rows(9), root, LABELS, image_size=16, source="unit", converter_version="t", shard_rows=1)
    write_dataset(make_rows(3), root, LABELS, image_size=16, source="unit", converter_version="t", shard_rows=1)
    assert sum(read_split(root, s).num_rows for s in SPLITS) == 3
    with pytest.raises(DatasetFormatError, match="already holds a dataset"):
        write_dataset(make_rows(3), root, LABELS, image_size=16, source="u", converter_version="t", overwrite=False)


def test_empty_split_still_readable(tmp_path):
    rows = [r for r in make_rows(9) if r["split"] == "train"]
    write_dataset(rows, tmp_path, LABELS, image_size=16, source="unit", converter_version="t")
    assert read_split(tmp_path, "test").num_rows == 0
    assert (tmp_path / "test" / "part-00000.parquet").is_file()


@pytest.mark.s3
def test_round_trip_s3(s3_bucket):
    _assert_round_trip(f"s3://{s3_bucket}/datasets/unit", make_rows())
    assert split_path(f"s3://{s3_bucket}/datasets/unit/", "train") == f"s3://{s3_bucket}/datasets/unit/train"
    # Rewriting replaces the old shards on S3 too.
    root = f"s3://{s3_bucket}/datasets/unit"
    write_dataset(make_rows(3), root, LABELS, image_size=16, source="unit", converter_version="t", shard_rows=1)
    assert sum(read_split(root, s).num_rows for s in SPLITS) == 3
    assert read_manifest(root).shards["train"] == ["part-00000.parquet"]
    fs, base = open_filesystem(root)  # what ray.data.read_parquet would list
    assert [i.base_name for i in fs.get_file_info(pafs.FileSelector(f"{base}/train"))] == ["part-00000.parquet"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label_idx": 3}, "label_idx 3 does not match label 'fear'"),
        ({"label": "surprise"}, "label 'surprise' is not in the label set"),
        ({"peak_index": 5}, "peak_index 5 is outside 0..0"),
        ({"frame_valence": [0.1, 0.2]}, "frame_valence has 2 values but the clip has 1 frames"),
        ({"frames": [b"not an image"]}, "frame 0 is not PNG or JPEG bytes"),
        ({"frames": []}, "frames must be a non-empty list"),
        ({"split": "dev"}, "split 'dev' is not one of"),
        ({"va_source": "guessed"}, "va_source 'guessed'"),
        ({"valence": None}, "both be set or both be null"),
        ({"valence": 1.5}, r"valence 1.5 is outside \[-1, 1\]"),
        ({"colour": "red"}, r"unknown columns \['colour'\]"),
        ({"fps": 0}, "fps must be a positive number"),
    ],
)
def test_validation_names_the_problem(tmp_path, change, message):
    row = make_rows(1)[0]
    row.update(change)
    with pytest.raises(DatasetFormatError, match=message):
        write_dataset([row], tmp_path, LABELS, image_size=16, source="unit", converter_version="t")
    # Nothing half-written looks like a dataset.
    with pytest.raises(DatasetFormatError, match="no dataset at"):
        read_manifest(tmp_path)


def test_duplicate_clip_id_rejected(tmp_path):
    rows = make_rows(2)
    rows[1]["clip_id"] = rows[0]["clip_id"]
    with pytest.raises(DatasetFormatError, match="duplicate clip_id 'clip000'"):
        write_dataset(rows, tmp_path, LABELS, image_size=16, source="unit", converter_version="t")


def test_manifest_json_errors():
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        Manifest.from_json("{oops")
    with pytest.raises(DatasetFormatError, match=r"lacks required keys \['image_size'"):
        Manifest.from_json('{"labels": [], "counts": {}, "converter_version": "x", "source": "y"}')
