"""The layering rules of docs/architecture.md, checked on the source: a library without Ray, no import cycles between
its sub-packages, and files small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 400
LAYERED = ("classemo", "jobs", "tune", "serve")


def _sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (REPO / f).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file (function-level imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _unit(module: str) -> str | None:
    """`classemo.data.format` -> `classemo.data`; a top-level module (`classemo.predictor`) is its own unit."""
    parts = module.split(".")
    if parts[0] != "classemo" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def test_the_library_never_imports_ray() -> None:
    offenders = [f"{p.relative_to(REPO)} imports {m}" for p in _sources("classemo") for m in _imports(p)
                 if m == "ray" or m.startswith("ray.")]
    assert not offenders, offenders


def test_no_file_is_over_the_size_limit() -> None:
    long = {str(p.relative_to(REPO)): n for p in _sources(*LAYERED) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these along their seams (limit {MAX_LINES} lines): {long}"


def test_no_import_cycle_between_library_units() -> None:
    graph: dict[str, set[str]] = {}
    for path in _sources("classemo"):
        rel = path.relative_to(REPO).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        unit = _unit(".".join(parts))
        if unit is None:
            continue
        deps = {u for m in _imports(path) if (u := _unit(m)) and u != unit}
        graph.setdefault(unit, set()).update(deps)

    def reaches(start: str, goal: str, seen: set[str]) -> list[str] | None:
        for nxt in sorted(graph.get(start, ())):
            if nxt == goal:
                return [start, nxt]
            if nxt not in seen:
                seen.add(nxt)
                if (path := reaches(nxt, goal, seen)) is not None:
                    return [start, *path]
        return None

    cycles = [" -> ".join(c) for unit in sorted(graph) if (c := reaches(unit, unit, set()))]
    assert not cycles, f"import cycles between classemo units: {cycles}"
