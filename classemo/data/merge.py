"""Several converted datasets as one: real stills beside synthetic sequences, or a user's data beside a public set.

`merge_datasets` streams every split of every source into one dataset at `out`. Each clip keeps its split, so no
person moves between train, val and test, and its clip and subject ids get the source's name as prefix, so two
sources cannot collide. The sources must agree on the labels (the same names in the same order: a model's class
index means one thing) and on how faces were cropped (a model is run with one face path); frames keep their own
size, since the decoders resize every frame to the model's input.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Iterator, Sequence

from classemo.data.format import SPLITS, DatasetFormatError, Manifest, read_manifest, read_split, write_dataset

MERGE_VERSION = "merge/1"


def source_name(root: str | os.PathLike) -> str:
    """The id prefix of a source: the last part of its path or S3 prefix (`data/muxspace` -> `muxspace`)."""
    return PurePosixPath(str(root).rstrip("/")).name or str(root)


def _crop_rule(manifest: Manifest) -> dict:
    """The face settings that change what a crop shows; `size` only scales it, and the decoders resize anyway."""
    return {k: v for k, v in (manifest.face or {}).items() if k != "size"}


def _check_compatible(manifests: Sequence[Manifest], roots: Sequence[str]) -> None:
    first, first_root = manifests[0], roots[0]
    names = [d["name"] for d in first.labels]
    for manifest, root in zip(manifests[1:], roots[1:]):
        other = [d["name"] for d in manifest.labels]
        if other != names:
            raise DatasetFormatError(f"{root} has labels {other}, but {first_root} has {names}: convert both with "
                                     f"the same label map (same names, same order) before merging")
        if _crop_rule(manifest) != _crop_rule(first):
            raise DatasetFormatError(f"{root} was cropped with face settings {manifest.face}, but {first_root} with "
                                     f"{first.face}: a model runs one face path, so convert both the same way")


def _merged_face(manifests: Sequence[Manifest]) -> dict | None:
    if manifests[0].face is None:
        return None
    return {**manifests[0].face, "size": max(m.image_size for m in manifests)}


def merge_datasets(roots: Sequence[str | os.PathLike], out: str | os.PathLike) -> Manifest:
    """Write the clips of every dataset in `roots` into one dataset at `out`.

    Args:
        roots: Two or more converted datasets (local paths or `s3://` prefixes) with the same labels and face
            settings, and distinct last path parts (they become the id prefixes).
        out: The merged dataset's root; it must not be one of `roots`.

    Returns:
        The merged manifest; `extra["merged"]` records each source's clip counts, converter and source.

    Raises:
        DatasetFormatError: Fewer than two sources, a missing source, labels or face settings that differ, two
            sources with one name, or `out` among the sources.
    """
    roots = [str(r) for r in roots]
    if len(roots) < 2:
        raise DatasetFormatError(f"merge needs at least two datasets, got {len(roots)}")
    names = [source_name(r) for r in roots]
    if len(set(names)) != len(names):
        raise DatasetFormatError(f"sources {roots} share a folder name ({names}); it prefixes every clip id, so "
                                 f"each must differ")
    if str(out).rstrip("/") in {r.rstrip("/") for r in roots}:
        raise DatasetFormatError(f"the output {out} is one of the sources")
    manifests = [read_manifest(r) for r in roots]
    _check_compatible(manifests, roots)

    def rows() -> Iterator[dict]:
        for root, name in zip(roots, names):
            for split in SPLITS:
                for row in read_split(root, split).to_pylist():
                    subject = row.get("subject_id")
                    yield {**row, "clip_id": f"{name}/{row['clip_id']}",
                           "subject_id": f"{name}/{subject}" if subject else subject}

    summary = {name: {"root": root, "source": m.source, "converter_version": m.converter_version, "counts": m.counts}
               for root, name, m in zip(roots, names, manifests)}
    return write_dataset(rows(), str(out), manifests[0].label_set,
                         image_size=max(m.image_size for m in manifests),
                         source="+".join(m.source for m in manifests), converter_version=MERGE_VERSION,
                         extra={"merged": summary}, face=_merged_face(manifests))


__all__ = ["MERGE_VERSION", "merge_datasets", "source_name"]
