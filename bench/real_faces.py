"""Subject-independent k-fold on a converted dataset: the project's own job per fold beside the HOG + SVM floor.

    python bench/real_faces.py data/muxspace --config configs/train_muxspace.yaml [--folds 5] [--out runs/real_faces]
    python bench/real_faces.py data/sample stargan.enabled=false   # the demo's synthetic sequences, same protocol

Every clip of the dataset (all its splits) is pooled and its people dealt into `--folds` folds of about the same
number of clips: nobody is ever in two folds. Fold k tests on its people; of the others, about one in eight become
the validation split (best epoch, champion scoring) and the rest train. Per fold, in the same run:

- the model: `python jobs/train.py --config CONFIG data.root=<fold> ...`, exactly as a user runs it, then
  `classemo.evaluate.evaluate_dataset` on the fold's test split;
- the floor: HOG + linear SVM (bench/hog_floor.py) fitted on the fold's train + val, scored on the same test split.

Job overrides after the options go to every fold's job as they are. `--config configs/finetune_builtin.yaml`
fine-tunes every fold from the model shipped in the package (docs/training.md, "Fine-tuning from the built-in
model"); add `unified.init_from=<dir>` to start from another checkpoint instead, such as the FER+-only start of
`scripts/build_builtin_model.py` (`data/builtin-build/ferplus-start`, which has seen no faces-muxspace face, so no
fold's test faces leak in). A checkpoint directory must be an absolute path: the folds' jobs run from the repository
root.

It prints accuracy, UAR and per-class accuracy of both per fold and as mean +- std over folds, and writes
`results.json` and `results.md` into `--out`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its sibling script

from hog_floor import hog_floor  # noqa: E402


def subject_folds(subjects: list[str], folds: int, seed: int) -> dict[str, int]:
    """Deal people into `folds` folds of about equal clip counts: largest first, each to the lightest fold."""
    counts: dict[str, int] = {}
    for s in subjects:
        counts[s] = counts.get(s, 0) + 1
    if len(counts) < folds:
        raise SystemExit(f"error: {len(counts)} people cannot fill {folds} folds (subject_id is missing or too coarse;"
                         " convert with --subject-pattern)")
    order = sorted(counts, key=lambda s: (-counts[s], s))
    rng = np.random.default_rng(seed)
    rng.shuffle(order)  # ties between equally sized people broken at random, then largest first (stable sort)
    order.sort(key=lambda s: -counts[s])
    load = [0] * folds
    out = {}
    for s in order:
        k = int(np.argmin(load))
        out[s] = k
        load[k] += counts[s]
    return out


def write_fold(rows: list[dict], fold_of: dict[str, int], k: int, root: Path, manifest: Any, seed: int) -> Path:
    """The dataset of fold k: its people test, one in eight of the others validate, the rest train."""
    from classemo.data.format import write_dataset

    others = sorted({r["subject_id"] for r in rows if fold_of[r["subject_id"]] != k})
    rng = np.random.default_rng(seed + k)
    val = set(rng.choice(others, size=max(1, round(len(others) / 8)), replace=False).tolist())

    def split_of(subject: str) -> str:
        return "test" if fold_of[subject] == k else "val" if subject in val else "train"

    out = root / f"fold{k}"
    write_dataset(({**r, "split": split_of(r["subject_id"])} for r in rows), str(out), manifest.label_set,
                  image_size=manifest.image_size, source=manifest.source,
                  converter_version=manifest.converter_version, face=manifest.face,
                  extra={"kfold": {"fold": k, "folds": len(set(fold_of.values())), "seed": seed}})
    return out


def train_fold(fold_root: Path, config: str, overrides: list[str], log: Path) -> tuple[Path, float]:
    """`python jobs/train.py` on the fold, the model exported beside it; returns its directory and the seconds."""
    model_dir = fold_root / "model"
    cmd = [sys.executable, str(ROOT / "jobs" / "train.py"), *(["--config", config] if config else []),
           f"data.root={fold_root}",
           "data.synth_if_missing=false", "run.register=false", f"run.export_model={model_dir}",
           f"run.name=real-faces-{fold_root.name}", "run.experiment=classemo-real-faces", *overrides]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"error: the job failed on {fold_root.name} (exit {proc.returncode}); see {log}")
    return model_dir, time.perf_counter() - t0


def summary(per_fold: list[dict[str, Any]], key: str) -> str:
    values = np.array([f[key] for f in per_fold])
    return f"{values.mean():.3f} +- {values.std():.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="converted dataset (local path), with subject_id per clip")
    ap.add_argument("--config", default="", help="the job's YAML (model, epochs, ...), as for jobs/train.py "
                                                 "(default: none, the job's embedded defaults)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="which people go to which fold")
    ap.add_argument("--out", default="runs/real_faces", help="fold datasets, models, logs and results")
    ap.add_argument("--only", type=int, nargs="*", help="run only these folds (their datasets are still written)")
    ap.add_argument("--hog-size", type=int, default=64)
    ap.add_argument("--hog-c", type=float, default=0.01)
    ap.add_argument("overrides", nargs="*", help="job overrides for every fold, e.g. unified.epochs=20")
    args = ap.parse_intermixed_args()  # overrides may follow options

    import pyarrow as pa

    from classemo.data.format import read_manifest, read_split
    from classemo.evaluate import evaluate_dataset

    manifest = read_manifest(args.root)
    rows = pa.concat_tables([read_split(args.root, s) for s in ("train", "val", "test")]).to_pylist()
    if not rows:
        raise SystemExit(f"error: {args.root} holds no clips")
    fold_of = subject_folds([r["subject_id"] for r in rows], args.folds, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(manifest.label_set.names)
    results: list[dict[str, Any]] = []
    for k in range(args.folds):
        fold_root = write_fold(rows, fold_of, k, out, manifest, args.seed)
        if args.only and k not in args.only:
            continue
        floor = hog_floor(str(fold_root), size=args.hog_size, c=args.hog_c)
        print(f"[fold {k}] HOG floor: accuracy {floor['accuracy']:.3f}, UAR {floor['uar']:.3f} "
              f"(test {floor['num_test']})", flush=True)
        model_dir, seconds = train_fold(fold_root, args.config, args.overrides, out / f"fold{k}.log")
        test = evaluate_dataset(str(model_dir), str(fold_root), split="test")
        model = {"accuracy": float(test["accuracy"]), "uar": float(test["uar"]),
                 "per_class": {n: float(v) for n, v in test["per_class_accuracy"].items()}}
        print(f"[fold {k}] model: accuracy {model['accuracy']:.3f}, UAR {model['uar']:.3f} ({seconds:.0f} s)",
              flush=True)
        results.append({"fold": k, "model": model, "floor": floor, "train_seconds": seconds})

    if not results:
        print(f"fold datasets written under {out}; no fold was run (--only {args.only})")
        return
    table = [f"Subject-independent {args.folds}-fold on `{args.root}`, job config "
             f"`{args.config or 'embedded defaults'}` {' '.join(args.overrides)}".rstrip(), "",
             "| fold | model acc | model UAR | HOG+SVM acc | HOG+SVM UAR | train s |", "|---|---|---|---|---|---|"]
    for r in results:
        table.append(f"| {r['fold']} | {r['model']['accuracy']:.3f} | {r['model']['uar']:.3f} | "
                     f"{r['floor']['accuracy']:.3f} | {r['floor']['uar']:.3f} | {r['train_seconds']:.0f} |")
    models = [r["model"] for r in results]
    floors = [r["floor"] for r in results]
    table.append(f"| mean +- std | {summary(models, 'accuracy')} | {summary(models, 'uar')} | "
                 f"{summary(floors, 'accuracy')} | {summary(floors, 'uar')} | |")
    table += ["", "| class | model (mean over folds) | HOG+SVM |", "|---|---|---|"]
    for n in names:
        m = [r["model"]["per_class"][n] for r in results if n in r["model"]["per_class"]]
        f = [r["floor"]["per_class"][n] for r in results if n in r["floor"]["per_class"]]
        if m or f:
            table.append(f"| {n} | {np.nanmean(m):.3f} | {np.nanmean(f):.3f} |")
    text = "\n".join(table)
    print(text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"root": args.root, "config": args.config,
                                                  "overrides": args.overrides, "folds": results}, indent=2))
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
