"""Rebuild the built-in model (classemo/builtin/) with the project's own commands, and measure it.

    python scripts/build_builtin_model.py [--work data/builtin-build] [--install]

1. `classemo data convert images` on the whole of faces-muxspace (real faces, Apache-2.0), split by person: --faces,
   by default $CLASSEMO_DATA_DIR/faces-muxspace (../shared/data/faces-muxspace when the variable is unset);
2. `classemo data synth` at 64 px, 4-frame sequences (time and annotated valence/arousal);
3. `classemo data merge` of the two;
4. stage 1, real faces: `python jobs/train.py --config configs/train_muxspace.yaml` on the real faces alone, at the
   built-in model's 4 frames (a still is a 1-frame clip, padded);
5. stage 2, both: `python jobs/train.py --config configs/builtin.yaml unified.resume_from=<stage 1>` on the merged
   dataset, so the temporal encoder and the valence/arousal head learn sequences while the real faces stay in every
   batch; the best checkpoint is exported;
6. scores on each source's test split (`classemo.evaluate.evaluate_dataset`), the HOG + linear-SVM floor on the
   real faces' split in the same run, and the four labelled stills of tests/fixtures/media (a sanity check only:
   they are never training input);
7. with `--install`, the checkpoint goes to classemo/builtin/ and the figures to classemo/builtin/metrics.json,
   which MODEL_CARD.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The whole data sets are not in the repository (tests/fixtures/faces-muxspace is only a slice for the tests).
DATA_DIR = Path(os.environ.get("CLASSEMO_DATA_DIR", ROOT.parent / "shared" / "data"))
MEDIA = ROOT / "tests" / "fixtures" / "media"
sys.path.insert(0, str(ROOT / "bench"))  # the HOG floor is a bench script, not part of the package

# The four stills whose file names carry an expression code (tests/fixtures/media/SOURCES.md), as this label set
# names them.
STILLS = {"0-f15-hao-ph.jpg": "happy", "15-f13-anc-ph.jpg": "anger", "45-m7-di-ph.jpg": "disgust",
          "0-f1-su-ph.jpg": "positive"}
SUBJECT_PATTERN = r"^(?P<subject>.+)_[^_]+$"


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def classemo(*args: str) -> list[str]:
    return [sys.executable, "-m", "classemo.cli", *args]


def build_data(work: Path, faces: Path, seed: int) -> tuple[Path, Path, Path]:
    real, synth, merged = work / "muxspace", work / "synth", work / "merged"
    if not (real / "manifest.json").exists():
        run(classemo("data", "convert", "images", str(faces), str(real), "--label-map",
                     "configs/label_maps/muxspace.yaml", "--image-size", "64", "--subject-pattern", SUBJECT_PATTERN))
    run(classemo("data", "synth", "--out", str(synth), "--clips-per-class", "60", "--num-frames", "4",
                 "--image-size", "64", "--subjects", "60", "--seed", str(seed)))
    if not (merged / "manifest.json").exists():
        run(classemo("data", "merge", str(real), str(synth), "--out", str(merged)))
    return real, synth, merged


def stills(model: Path) -> dict:
    """The largest face of each labelled still: predicted label, probability, and whether it matches."""
    import cv2

    from classemo.predictor import Predictor

    predictor = Predictor.from_checkpoint(model)
    out = {}
    for name, want in STILLS.items():
        faces = predictor.predict_image(cv2.imread(str(MEDIA / name)))
        if not faces:
            out[name] = {"expected": want, "predicted": None, "correct": False}
            continue
        pred = faces[0][1]
        prob = float(pred.probs[predictor.labels.index(pred.label)])
        out[name] = {"expected": want, "predicted": pred.label, "prob": round(prob, 3), "correct": pred.label == want}
    return out


def train(args: argparse.Namespace, real: Path, merged: Path, stage1: Path, model: Path) -> None:
    """Stage 1 on the real faces alone, then stage 2 on the merged dataset from stage 1's weights."""
    run([sys.executable, "jobs/train.py", "--config", args.stage1_config, f"data.root={real}", "data.num_frames=4",
         f"unified.epochs={args.stage1_epochs}", f"run.export_model={stage1}", "run.register=false",
         "run.name=classemo-builtin-stage1", f"run.seed={args.seed}"])
    run([sys.executable, "jobs/train.py", "--config", args.config, f"data.root={merged}",
         f"unified.resume_from={stage1}", f"run.export_model={model}", "run.register=false",
         f"run.seed={args.seed}", *args.overrides])


def render_card(metrics: dict, checkpoint: Path) -> str:
    """MODEL_CARD.md from scripts/builtin_model_card.md and the figures just measured."""
    import torch

    config = json.loads((checkpoint / "config.json").read_text())
    state = torch.load(checkpoint / "model.pt", map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    params = sum(v.numel() for k, v in state.items() if hasattr(v, "numel") and "running" not in k
                 and "num_batches" not in k)
    real, synth, hog = metrics["real_faces_test"], metrics["synthetic_test"], metrics["hog_floor_real_faces_test"]

    def counts(source: str) -> str:
        manifest = json.loads((checkpoint.parent / source / "manifest.json").read_text())
        return " / ".join(f"{manifest['counts'][s]:,}" for s in ("train", "val", "test"))

    stills = ", ".join(f"{name} ({s['expected']}) -> {s['predicted']} ({s.get('prob', 0):.2f})"
                       for name, s in metrics["stills"].items())
    correct = sum(s["correct"] for s in metrics["stills"].values())
    fill = {
        "params": f"{params / 1e6:.2f} M", "size_mb": f"{(checkpoint / 'model.pt').stat().st_size / 2**20:.1f}",
        "num_frames": config.get("model", {}).get("kwargs", {}).get("num_frames", 4),
        "train_minutes": metrics["recipe"]["train_minutes"], "stage1_epochs": metrics["recipe"]["stage1_epochs"],
        "real_counts": counts("muxspace"), "synth_counts": counts("synth"),
        "real_n": real["num_samples"], "real_acc": f"{real['accuracy']:.3f}", "real_uar": f"{real['uar']:.3f}",
        "hog_acc": f"{hog['accuracy']:.3f}", "hog_uar": f"{hog['uar']:.3f}",
        "synth_n": synth["num_samples"], "synth_acc": f"{synth['accuracy']:.3f}", "synth_uar": f"{synth['uar']:.3f}",
        "real_per_class": ", ".join(f"{k} {v:.2f}" for k, v in real["per_class_accuracy"].items()),
        "synth_vccc": f"{synth.get('valence_ccc', float('nan')):.2f}",
        "synth_accc": f"{synth.get('arousal_ccc', float('nan')):.2f}",
        "stills": f"**{correct} of 4**: {stills}",
    }
    return (ROOT / "scripts" / "builtin_model_card.md").read_text().format(**fill)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "builtin-build", help="datasets and run outputs")
    ap.add_argument("--faces", type=Path, default=DATA_DIR / "faces-muxspace",
                    help="the real-face folder (default: $CLASSEMO_DATA_DIR/faces-muxspace)")
    ap.add_argument("--stage1-config", default="configs/train_muxspace.yaml", help="stage 1: real faces alone")
    ap.add_argument("--stage1-epochs", type=int, default=16)
    ap.add_argument("--config", default="configs/builtin.yaml", help="stage 2: the merged dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--install", action="store_true", help="copy the model and its figures into classemo/builtin/")
    ap.add_argument("--skip-training", action="store_true", help="measure and install an existing <work>/model")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for stage 2's jobs/train.py")
    args = ap.parse_args()

    from classemo.evaluate import evaluate_dataset
    from hog_floor import hog_floor

    work = args.work.resolve()
    real, synth, merged = build_data(work, args.faces, args.seed)
    stage1, model = work / "stage1", work / "model"
    started = time.time()
    if not args.skip_training:
        train(args, real, merged, stage1, model)
        minutes = round((time.time() - started) / 60, 1)
    else:  # measuring an earlier build again: its training time is the one on record
        minutes = json.loads((work / "metrics.json").read_text())["recipe"]["train_minutes"]

    def scores(data: Path) -> dict:
        m = evaluate_dataset(str(model), str(data), split="test")
        keys = ("num_samples", "accuracy", "uar", "per_class_accuracy", "valence_ccc", "arousal_ccc",
                "derived_valence_ccc", "derived_arousal_ccc")
        return {k: m[k] for k in keys if k in m}

    metrics = {"recipe": {"stage1": [args.stage1_config, "data.num_frames=4", f"unified.epochs={args.stage1_epochs}"],
                          "stage1_epochs": args.stage1_epochs, "stage2": [args.config, *args.overrides],
                          "seed": args.seed,
                          "train_minutes": minutes},
               "real_faces_test": scores(real), "synthetic_test": scores(synth),
               "hog_floor_real_faces_test": hog_floor(str(real)), "stills": stills(model)}
    print(json.dumps(metrics, indent=2, default=float))
    (work / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    if args.install:
        dest = ROOT / "classemo" / "builtin"
        for name in ("config.json", "model.pt"):
            shutil.copy2(model / name, dest / name)
        (dest / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
        (dest / "MODEL_CARD.md").write_text(render_card(metrics, model))
        print(f"installed the model, metrics.json and MODEL_CARD.md into {dest}")


if __name__ == "__main__":
    main()
