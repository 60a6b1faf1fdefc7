"""Label maps: a YAML file mapping a source dataset's label names onto the project's label set."""

from __future__ import annotations

import os
from collections.abc import Iterable

from classemo.labels import LabelSet


class LabelMapError(ValueError):
    """A label map that is malformed or leaves source labels unmapped."""


def load_label_map(path: str | os.PathLike) -> dict[str, str | None]:
    """Read a label map YAML: `source_label: target_label`, or `source_label: null` to drop that label.

    Raises:
        LabelMapError: the file is missing, not YAML, or not a flat mapping of strings.
    """
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise LabelMapError(f"label map {path} not found") from None
    except yaml.YAMLError as e:
        raise LabelMapError(f"label map {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or not data:
        raise LabelMapError(f"label map {path} must be a non-empty mapping 'source_label: target_label'")
    bad = {k: v for k, v in data.items() if not isinstance(k, str) or not (v is None or isinstance(v, str))}
    if bad:
        raise LabelMapError(f"label map {path}: keys and values must be label names (or null to drop), got {bad}")
    return {k.strip(): (None if v is None else v.strip()) for k, v in data.items()}


def resolve_label_map(
    source_labels: Iterable[str], labels: LabelSet, label_map: dict[str, str | None] | None = None
) -> dict[str, str | None]:
    """Map every source label onto the target set; a label already in the set maps to itself.

    Returns:
        source label -> target label, or None for labels the map drops.

    Raises:
        LabelMapError: listing every source label with no target, and map targets outside the label set.
    """
    label_map = dict(label_map or {})
    bad_targets = sorted({t for t in label_map.values() if t is not None and t not in labels.names})
    if bad_targets:
        raise LabelMapError(f"label map targets {bad_targets} are not in the label set {list(labels.names)}")
    resolved: dict[str, str | None] = {}
    unmapped = []
    for name in sorted(set(source_labels)):
        if name in label_map:
            resolved[name] = label_map[name]
        elif name in labels.names:
            resolved[name] = name
        else:
            unmapped.append(name)
    if unmapped:
        raise LabelMapError(
            f"source labels {unmapped} are not in the label set {list(labels.names)} and the label map does not "
            "map them; add them to --label-map (use null to drop a label)"
        )
    return resolved


def parse_label_set(labels: str | None) -> LabelSet:
    """`None` -> the paper's label set; `"a,b,c"` -> a custom set in that order."""
    if labels is None or not labels.strip():
        return LabelSet.paper()
    return LabelSet(tuple(n.strip() for n in labels.split(",") if n.strip()))
