"""The paper's comparison (Tables 1-2 and the NetVLAD ablation of Figure 5) as one run: what to train, what each
model costs, and the table and plots that come out. `jobs/compare.py` trains the rows on Ray; this module has no Ray.

A comparison config is a training-job config (data, stargan, unified, scaling, run) plus a `compare:` section:

    compare:
      rows:                     # default: DEFAULT_ROWS (the paper's model, its NetVLAD ablation, the four others)
        - {name: classemo, model: classemo_tiny}
        - {name: fan, model: fan_tiny, model_kwargs: {drop_rate: 0.2}}
      out_dir: runs/compare     # the table (Markdown, CSV), plots and per-row metrics land in <out_dir>/<run name>

Every row gets the same data, split, seed, epochs and optimiser; only `unified.model` / `unified.model_kwargs` change.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from classemo.config import ConfigError, JobConfig, apply_override, merge, parse_override, read_yaml


@dataclass
class CompareRow:
    """One model of the comparison: a row label, a registry name and its create_model kwargs."""

    name: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_paper_model(self) -> bool:
        """The paper's own model (ClassEmoNet presets), which alone uses StarGAN's peak frames (its M_H term)."""
        return self.model.startswith("classemo_")


DEFAULT_ROWS: tuple[CompareRow, ...] = (
    CompareRow("classemo", "classemo_tiny"),
    CompareRow("classemo without NetVLAD", "classemo_tiny", {"use_netvlad": False}),
    CompareRow("CNN-GRU", "cnn_gru_tiny"),
    CompareRow("LBVCNN", "lbvcnn_tiny"),
    CompareRow("Enhanced ConvLSTM", "convlstm_tiny"),
    CompareRow("FAN", "fan_tiny"),
)
COLUMNS = ("model", "registry", "accuracy", "uar", "valence_rmse", "valence_ccc", "arousal_rmse", "arousal_ccc",
           "params_m", "gflops_per_clip", "train_minutes")


@dataclass
class CompareConfig:
    """The `compare:` section and the job config every row trains with."""

    job: JobConfig
    rows: list[CompareRow]
    out_dir: str = "runs/compare"


def load_compare_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> CompareConfig:
    """Job defaults, the YAML file and `section.key=value` overrides (`compare.out_dir=...` too), validated.

    Raises:
        ConfigError: For an unknown key, a row without `model`, an unknown registry name or duplicate row names.
    """
    from classemo.models import list_models

    data = JobConfig().to_dict()
    compare: dict[str, Any] = {}
    if path:
        loaded = read_yaml(path)
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {Path(path)} must hold a mapping of sections, got {type(loaded).__name__}")
        compare = dict(loaded.pop("compare", None) or {})
        data = merge(data, loaded)
    for text in overrides:
        parsed = parse_override(text)
        if "compare" in parsed:
            compare = merge(compare, parsed["compare"])
        else:
            data = apply_override(data, text)
    unknown = set(compare) - {"rows", "out_dir"}
    if unknown:
        raise ConfigError(f"unknown key(s) in compare: {sorted(unknown)}; expected rows, out_dir")
    rows = [_row(r, i) for i, r in enumerate(compare.get("rows") or [])] or [CompareRow(r.name, r.model,
                                                                                        dict(r.model_kwargs))
                                                                             for r in DEFAULT_ROWS]
    registered = set(list_models())
    for row in rows:
        if row.model not in registered:
            raise ConfigError(f"compare row {row.name!r}: unknown model {row.model!r}; registered models are "
                              f"{sorted(m for m in registered if not m.startswith('stargan'))}")
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ConfigError(f"compare rows need distinct names, got {names}")
    return CompareConfig(job=JobConfig.from_dict(data), rows=rows, out_dir=str(compare.get("out_dir", "runs/compare")))


def _row(raw: Any, index: int) -> CompareRow:
    if not isinstance(raw, Mapping) or "model" not in raw:
        raise ConfigError(f"compare.rows[{index}] must be a mapping with at least 'model', got {raw!r}")
    extra = set(raw) - {"name", "model", "model_kwargs"}
    if extra:
        raise ConfigError(f"compare.rows[{index}]: unknown key(s) {sorted(extra)}; expected name, model, model_kwargs")
    kwargs = raw.get("model_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"compare.rows[{index}].model_kwargs must be a mapping, got {kwargs!r}")
    return CompareRow(str(raw.get("name") or raw["model"]), str(raw["model"]), dict(kwargs))


def model_cost(model: Any, *, num_frames: int, image_size: int) -> tuple[int, float]:
    """Trainable parameters and forward GFLOPs of one clip of `num_frames` frames (torch's FLOP counter, which
    counts a multiply-add as 2 FLOPs; ops without a formula, e.g. elementwise, are not counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    was_training = model.training
    model.eval()
    clip = torch.zeros(1, num_frames, 3, image_size, image_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(clip)
    model.train(was_training)
    return params, counter.get_total_flops() / 1e9


def table_row(row: CompareRow, test: Mapping[str, Any], *, params: int, gflops: float,
              train_seconds: float) -> dict[str, Any]:
    """One line of the comparison table from a row's test metrics (`classemo.evaluate.evaluate_dataset`)."""
    out: dict[str, Any] = {"model": row.name, "registry": row.model}
    for key in COLUMNS[2:8]:
        value = test.get(key)
        out[key] = float(value) if isinstance(value, (int, float)) else math.nan
    out.update(params_m=params / 1e6, gflops_per_clip=gflops, train_minutes=train_seconds / 60.0,
               per_class_accuracy=dict(test.get("per_class_accuracy") or {}))
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def to_markdown(rows: Sequence[Mapping[str, Any]], *, test_clips: int | None = None,
                clip_shape: tuple[int, int] | None = None) -> str:
    """Tables 1 and 2 side by side: accuracy and UAR, valence/arousal RMSE and CCC, cost. Best value in bold."""
    best = {}
    for key, higher in (("accuracy", True), ("uar", True), ("valence_ccc", True), ("arousal_ccc", True),
                        ("valence_rmse", False), ("arousal_rmse", False)):
        values = [r[key] for r in rows if not math.isnan(r[key])]
        if values:
            best[key] = max(values) if higher else min(values)
    header = ("| model | accuracy | UAR | valence RMSE | valence CCC | arousal RMSE | arousal CCC | params (M) | "
              "GFLOPs / clip | train (min) |")
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        cells = [f"{r['model']} (`{r['registry']}`)"]
        for key in COLUMNS[2:8]:
            text = _fmt(r[key])
            cells.append(f"**{text}**" if key in best and r[key] == best[key] else text)
        cells += [_fmt(r["params_m"], 2), _fmt(r["gflops_per_clip"], 3), _fmt(r["train_minutes"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"Test split: {test_clips} clips." if test_clips is not None else "",
             f"GFLOPs of one clip of this run's input ({clip_shape[0]} frames at {clip_shape[1]} px)."
             if clip_shape else "", "Bold: the best of each column."]
    lines.append("\n" + " ".join(n for n in notes if n))
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """The table as CSV (per-class accuracy as `acc_<label>` columns)."""
    labels = sorted({label for r in rows for label in r.get("per_class_accuracy", {})})
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(COLUMNS) + [f"acc_{label}" for label in labels])
        for r in rows:
            per_class = r.get("per_class_accuracy", {})
            writer.writerow([r[c] for c in COLUMNS] + [per_class.get(label, math.nan) for label in labels])
    return path


def plot_comparison(rows: Sequence[Mapping[str, Any]], path: str | Path | None = None) -> bytes:
    """Accuracy, UAR and mean V/A CCC per model (bars), beside accuracy against GFLOPs per clip (scatter)."""
    import numpy as np
    from matplotlib.figure import Figure

    from classemo.plots import _finish

    names = [r["model"] for r in rows]
    fig = Figure(figsize=(max(7.0, 1.3 * len(rows) + 5), 3.8))
    bars, cost = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    x = np.arange(len(rows))
    series = [("accuracy", [r["accuracy"] for r in rows]), ("UAR", [r["uar"] for r in rows]),
              ("mean V/A CCC", [np.nanmean([r["valence_ccc"], r["arousal_ccc"]])
                                if not (math.isnan(r["valence_ccc"]) and math.isnan(r["arousal_ccc"])) else math.nan
                                for r in rows])]
    for i, (label, values) in enumerate(series):
        drawn = bars.bar(x + (i - 1) * 0.27, np.nan_to_num(values), width=0.27, label=label)
        bars.bar_label(drawn, labels=["" if math.isnan(v) else f"{v:.2f}" for v in values], fontsize=6)
    bars.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
    bars.set_ylim(0, 1.1)
    bars.set_title("Test split: the paper's Tables 1-2")
    bars.legend(fontsize=7, loc="upper right")
    for r in rows:
        cost.scatter(r["gflops_per_clip"], r["accuracy"])
        cost.annotate(r["model"], (r["gflops_per_clip"], r["accuracy"]), fontsize=7, xytext=(3, 3),
                      textcoords="offset points")
    cost.set_xscale("log")
    cost.set_xlabel("GFLOPs per clip (log)")
    cost.set_ylabel("test accuracy")
    cost.set_title("Accuracy against cost")
    fig.tight_layout()
    return _finish(fig, path)


def ablation_pair(rows: Sequence[Mapping[str, Any]],
                  compare_rows: Sequence[CompareRow]) -> tuple[dict[str, float], dict[str, float]] | None:
    """Per-class accuracy of the paper's model with and without NetVLAD (Figure 5), when both rows ran."""
    by_name = {r["model"]: r for r in rows}
    with_vlad = next((c for c in compare_rows if c.is_paper_model and c.model_kwargs.get("use_netvlad", True)), None)
    without = next((c for c in compare_rows if c.is_paper_model and c.model_kwargs.get("use_netvlad") is False
                    and c.model == (with_vlad.model if with_vlad else None)), None)
    if with_vlad is None or without is None or with_vlad.name not in by_name or without.name not in by_name:
        return None
    return by_name[with_vlad.name]["per_class_accuracy"], by_name[without.name]["per_class_accuracy"]
