"""`classemo data merge`: clips keep their split, ids are prefixed, and sources that do not fit are refused."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from classemo.cli import app
from classemo.data.format import SPLITS, DatasetFormatError, read_manifest, read_split
from classemo.data.merge import merge_datasets
from classemo.synth.clips import write_synth_dataset


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("merge")
    a = base / "stills"
    b = base / "sequences"
    write_synth_dataset(str(a), clips_per_class=3, num_frames=1, image_size=32, seed=1, subjects=6)
    write_synth_dataset(str(b), clips_per_class=2, num_frames=3, image_size=24, seed=2, subjects=6)
    return a, b


def _rows(root) -> list[dict]:
    return pa.concat_tables([read_split(root, s) for s in SPLITS]).to_pylist()


def test_merge_keeps_every_clip_in_its_split_with_prefixed_ids(sources, tmp_path):
    a, b = sources
    manifest = merge_datasets([a, b], tmp_path / "both")
    ma, mb = read_manifest(a), read_manifest(b)
    assert manifest.counts == {s: ma.counts[s] + mb.counts[s] for s in SPLITS}
    assert manifest.image_size == 32 and manifest.face["size"] == 32
    assert manifest.extra["merged"]["stills"]["counts"] == ma.counts
    merged = {r["clip_id"]: r for r in _rows(tmp_path / "both")}
    for name, root in (("stills", a), ("sequences", b)):
        for row in _rows(root):
            got = merged[f"{name}/{row['clip_id']}"]
            assert got["split"] == row["split"] and got["label"] == row["label"]
            assert got["subject_id"] == f"{name}/{row['subject_id']}"
            assert got["frames"] == row["frames"]  # bytes untouched: the decoders resize to the model's input


def test_merge_refuses_sources_that_do_not_fit(sources, tmp_path):
    a, b = sources
    with pytest.raises(DatasetFormatError, match="at least two"):
        merge_datasets([a], tmp_path / "one")
    with pytest.raises(DatasetFormatError, match="is one of the sources"):
        merge_datasets([a, b], a)
    other = tmp_path / "relabelled" / "sequences"
    write_synth_dataset(str(other), clips_per_class=1, num_frames=1, image_size=24, seed=3, subjects=3)
    manifest = json.loads((other / "manifest.json").read_text())
    with pytest.raises(DatasetFormatError, match="share a folder name"):
        merge_datasets([b, other], tmp_path / "dup")
    renamed = tmp_path / "renamed"
    other.rename(renamed)
    manifest["labels"] = manifest["labels"][::-1]
    (renamed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetFormatError, match="same label map"):
        merge_datasets([a, renamed], tmp_path / "labels")
    manifest["labels"] = manifest["labels"][::-1]
    manifest["face"] = {**manifest["face"], "detector": "haar", "align": False}
    (renamed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetFormatError, match="face settings"):
        merge_datasets([a, renamed], tmp_path / "faces")


def test_cli_merge_prints_the_summary_or_names_the_problem(sources, tmp_path):
    a, b = sources
    result = CliRunner().invoke(app, ["data", "merge", str(a), str(b), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "converter: merge/1" in result.output
    result = CliRunner().invoke(app, ["data", "merge", str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "manifest.json not found" in result.output
