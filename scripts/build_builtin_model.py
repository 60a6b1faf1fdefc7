"""Rebuild the built-in model (classemo/builtin/) with the project's own commands, and measure it.

    python scripts/build_builtin_model.py [--work data/builtin-build] [--install]

Data ($CLASSEMO_DATA_DIR, or ../shared/data when unset; the images never go into the repository):
1. `classemo data convert ferplus` on FER+ (35,710 real 48x48 faces, ten votes each; soft labels, duplicates dropped);
2. `classemo data convert images` on faces-muxspace (real photos, Apache-2.0), split by person: measured on, and the
   data set that bench/real_faces.py fine-tunes from stage 1; not trained on here (its noisy disgust photos, mostly
   one person, cost stage 2 0.06 UAR on FER+ valid: docs/benchmarks-training.md, fifteenth session);
3. `classemo data synth`, 4-frame sequences with annotated valence/arousal;
4. `classemo data merge` of FER+ and the synthetic sequences.
Training (`python jobs/train.py`, Ray Train, MLflow):
5. stage 1, `configs/builtin_ferplus.yaml`: the paper's model on FER+ alone, chosen on FER+ valid. Its checkpoint
   (`<work>/ferplus-start`) is also the FER+-only start that `bench/real_faces.py --init-from` fine-tunes from;
6. stage 2, `configs/builtin.yaml`: from stage 1 (`unified.init_from`) on the merged data, so the temporal encoder and
   the valence/arousal head learn sequences while real faces stay in every batch: the built-in model;
7. the plain-CNN floor (bench/plain_cnn_floor.py): a plain CNN of about the model's size (1.47 M parameters, in one
   process, its own recipe) on stage 1's crops for stage 1's epochs;
8. calibration (scripts/calibrate_builtin.py): the model's softmax temperature, refitted on FER+ valid alone (stage 2's
   job fitted one on the merged valid split, cartoon sequences included; the model reads real faces), with ECE before
   and after on FER+ valid and test.
Measurement, in the same run: FER+ test (majority labels, duplicates dropped) for both stages, the plain CNN and the
HOG + linear-SVM floor on the same crops; faces-muxspace's and the synthetic test splits; the four labelled stills of
tests/fixtures/media (a sanity check: never training input). With `--install`, the checkpoint goes to
classemo/builtin/ and the figures to classemo/builtin/metrics.json, which MODEL_CARD.md quotes.

Every step whose output exists is skipped, so an interrupted build goes on where it stopped (a training stage that
was cut off resumes from its last epoch only through `jobs/train.py`'s own resume; here it restarts).
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
CROP_SIZE = 64  # stored crops; the model reads them at its own size (48 px)


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def classemo(*args: str) -> list[str]:
    return [sys.executable, "-m", "classemo.cli", *args]


def build_data(work: Path, ferplus: Path, faces: Path, seed: int, margin: float) -> dict[str, Path]:
    """Every source cut by one face path (the margin too: merge refuses sources cropped differently)."""
    paths = {k: work / k for k in ("ferplus", "muxspace", "synth", "ferplus-synth")}
    face = ["--image-size", str(CROP_SIZE), "--margin", str(margin)]
    if not (paths["ferplus"] / "manifest.json").exists():
        run(classemo("data", "convert", "ferplus", str(ferplus), "--out", str(paths["ferplus"]), *face,
                     "--no-progress"))
    if not (paths["muxspace"] / "manifest.json").exists():
        run(classemo("data", "convert", "images", str(faces), str(paths["muxspace"]), "--label-map",
                     "configs/label_maps/muxspace.yaml", *face, "--subject-pattern", SUBJECT_PATTERN))
    if not (paths["synth"] / "manifest.json").exists():
        run(classemo("data", "synth", "--out", str(paths["synth"]), "--clips-per-class", "60", "--num-frames", "4",
                     *face, "--subjects", "60", "--seed", str(seed)))
    if not (paths["ferplus-synth"] / "manifest.json").exists():
        run(classemo("data", "merge", str(paths["ferplus"]), str(paths["synth"]), "--out", str(paths["ferplus-synth"])))
    return paths


def train_stage(work: Path, name: str, args: list[str]) -> tuple[float, bool]:
    """One `jobs/train.py` run exported to `<work>/<name>`, unless it is there; its wall minutes (from the record of
    the run that made it, when skipped) and whether it was skipped."""
    out, record = work / name, work / "timings.json"
    timings = json.loads(record.read_text()) if record.exists() else {}
    if (out / "model.pt").exists() and name in timings:
        return timings[name], True
    started = time.time()
    run([sys.executable, "jobs/train.py", *args, f"run.export_model={out}", "run.register=false"])
    timings[name] = round((time.time() - started) / 60, 1)
    record.write_text(json.dumps(timings, indent=2) + "\n")
    return timings[name], False


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


def stills_summary(stills: dict) -> str:
    """The card's line on the labelled stills: how many it reads right, and each one's label and probability."""
    text = ", ".join(f"{name} ({s['expected']}) -> {s['predicted']} ({s.get('prob', 0):.2f})"
                     for name, s in stills.items())
    return f"**{sum(s['correct'] for s in stills.values())} of 4**: {text}"


def scores(model: Path, data: Path) -> dict:
    """Test-split figures of a checkpoint (`classemo.evaluate.evaluate_dataset`, the path `classemo evaluate` takes)."""
    from classemo.evaluate import evaluate_dataset

    m = evaluate_dataset(str(model), str(data), split="test")
    keys = ("num_samples", "accuracy", "uar", "per_class_accuracy", "valence_ccc", "arousal_ccc",
            "derived_valence_ccc", "derived_arousal_ccc")
    return {k: m[k] for k in keys if k in m}


def render_card(metrics: dict, checkpoint: Path, work: Path) -> str:
    """MODEL_CARD.md from scripts/builtin_model_card.md and the figures just measured."""
    import torch

    from calibrate_builtin import card_paragraph

    config = json.loads((checkpoint / "config.json").read_text())
    state = torch.load(checkpoint / "model.pt", map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    params = sum(v.numel() for k, v in state.items() if hasattr(v, "numel") and "running" not in k
                 and "num_batches" not in k)
    fer, fer1, cnn, hog = (metrics[k] for k in ("ferplus_test", "ferplus_test_stage1", "plain_cnn_ferplus_test",
                                                 "hog_floor_ferplus_test"))
    real, real_hog, synth = metrics["real_faces_test"], metrics["hog_floor_real_faces_test"], metrics["synthetic_test"]

    def counts(source: str) -> str:
        manifest = json.loads((work / source / "manifest.json").read_text())
        return " / ".join(f"{manifest['counts'][s]:,}" for s in ("train", "val", "test"))

    def per_class(m: dict) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in m.get("per_class_accuracy", m.get("per_class", {})).items())

    def figure(m: dict, key: str) -> str:
        return f"{m[key]:.3f}" if key in m else "not measured in this build (--no-floors)"

    targets = "; ".join(f"{name} {value:.3f} ({'met' if value >= want else 'not met'})" for name, value, want in
                        (("accuracy", fer["accuracy"], 0.88), ("UAR", fer["uar"], 0.70)))
    correct = sum(s["correct"] for s in metrics["stills"].values())
    recipe = metrics["recipe"]
    fill = {
        "params": f"{params / 1e6:.2f} M", "size_mb": f"{(checkpoint / 'model.pt').stat().st_size / 2**20:.1f}",
        "num_frames": config.get("model", {}).get("kwargs", {}).get("num_frames", 4),
        "image_size": config.get("preprocessing", {}).get("image_size", 48),
        "minutes": ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in recipe["minutes"].items()),
        "build_minutes": recipe.get("build_minutes") or "n/a",
        "stage1_epochs": recipe["stage1_epochs"], "stage2_epochs": recipe["stage2_epochs"],
        "cnn_epochs": recipe.get("plain_cnn_epochs", recipe["stage1_epochs"]),
        "cnn_minutes": recipe["minutes"].get("plain_cnn", "n/a"),
        "margin": config.get("preprocessing", {}).get("face", {}).get("margin", 0.2),
        "ferplus_counts": counts("ferplus"), "real_counts": counts("muxspace"), "synth_counts": counts("synth"),
        "fer_n": fer["num_samples"], "fer_acc": f"{fer['accuracy']:.3f}", "fer_uar": f"{fer['uar']:.3f}",
        "fer1_acc": f"{fer1['accuracy']:.3f}", "fer1_uar": f"{fer1['uar']:.3f}",
        "cnn_acc": figure(cnn, "accuracy"), "cnn_uar": figure(cnn, "uar"),
        "hog_acc": f"{hog['accuracy']:.3f}", "hog_uar": f"{hog['uar']:.3f}",
        "fer_per_class": per_class(fer), "cnn_per_class": per_class(cnn) or "not measured",
        "real_n": real["num_samples"], "real_acc": f"{real['accuracy']:.3f}", "real_uar": f"{real['uar']:.3f}",
        "real_hog_acc": f"{real_hog['accuracy']:.3f}", "real_hog_uar": f"{real_hog['uar']:.3f}",
        "synth_n": synth["num_samples"], "synth_acc": f"{synth['accuracy']:.3f}", "synth_uar": f"{synth['uar']:.3f}",
        "synth_vccc": f"{synth.get('valence_ccc', float('nan')):.2f}",
        "synth_accc": f"{synth.get('arousal_ccc', float('nan')):.2f}",
        "stills": stills_summary(metrics["stills"]),
        "targets": f"{targets}; stills {correct} of 4 ({'met' if correct == 4 else 'not met'})",
        "calibration": card_paragraph(metrics["calibration"]) if "calibration" in metrics else "",
    }
    return (ROOT / "scripts" / "builtin_model_card.md").read_text().format(**fill)


def install(work: Path, metrics: dict) -> None:
    """The build's model, its figures and its card into classemo/builtin/."""
    dest, model = ROOT / "classemo" / "builtin", work / "model"
    for name in ("config.json", "model.pt"):
        shutil.copy2(model / name, dest / name)
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    (dest / "MODEL_CARD.md").write_text(render_card(metrics, model, work))
    print(f"installed the model, metrics.json and MODEL_CARD.md into {dest}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "builtin-build", help="datasets and run outputs")
    ap.add_argument("--ferplus", type=Path, default=DATA_DIR / "ferplus" / "data",
                    help="the FERPlus folder (FER2013Train|Valid|Test; default $CLASSEMO_DATA_DIR/ferplus/data)")
    ap.add_argument("--faces", type=Path, default=DATA_DIR / "faces-muxspace",
                    help="the real-face folder (default: $CLASSEMO_DATA_DIR/faces-muxspace)")
    ap.add_argument("--stage1-config", default="configs/builtin_ferplus.yaml", help="stage 1: FER+ alone")
    ap.add_argument("--config", default="configs/builtin.yaml", help="stage 2: the merged dataset")
    ap.add_argument("--cnn-epochs", type=int, default=0, help="the plain CNN's epochs (default: stage 1's)")
    ap.add_argument("--margin", type=float, default=0.0,
                    help="the face path's margin for every source (FER+ faces are cut tight; 0 reads them best)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--install", action="store_true", help="copy the model and its figures into classemo/builtin/")
    ap.add_argument("--install-only", action="store_true",
                    help="install a finished build (<work>/model and <work>/metrics.json) without training or measuring")
    ap.add_argument("--no-floors", action="store_true", help="skip the plain-CNN floor (HOG still runs)")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for both stages' jobs/train.py")
    args = ap.parse_args()

    from calibrate_builtin import calibrate
    from classemo.config import load_config
    from hog_floor import hog_floor
    from plain_cnn_floor import plain_cnn_floor

    started = time.time()
    work = args.work.resolve()
    if args.install_only:
        install(work, json.loads((work / "metrics.json").read_text()))
        return
    paths = build_data(work, args.ferplus, args.faces, args.seed, args.margin)
    stage1, model = work / "ferplus-start", work / "model"
    seed = f"run.seed={args.seed}"
    # A build that goes on where one stopped counts the minutes of the steps it reused (not the data conversion).
    minutes, reused = {}, 0.0
    for key, name, stage_args in (
            ("stage1", "ferplus-start", ["--config", args.stage1_config, f"data.root={paths['ferplus']}"]),
            ("stage2", "model", ["--config", args.config, f"data.root={paths['ferplus-synth']}",
                                 f"unified.init_from={stage1}"])):
        minutes[key], skipped = train_stage(work, name, [*stage_args, seed, *args.overrides])
        reused += minutes[key] if skipped else 0.0
    epochs = [load_config(c, args.overrides).unified.epochs for c in (args.stage1_config, args.config)]
    cnn_epochs = args.cnn_epochs or epochs[0]
    cnn_scores, cnn_record = {}, work / "plain-cnn.json"
    if not args.no_floors:
        # Stage 1's crops and (unless --cnn-epochs) epochs: the paper's model against a plain CNN of its size.
        if cnn_record.exists():
            reused += json.loads(cnn_record.read_text())["minutes"]
        else:
            cnn_record.write_text(json.dumps(plain_cnn_floor(str(paths["ferplus"]), epochs=cnn_epochs,
                                                             seed=args.seed), indent=2) + "\n")
        cnn_scores = json.loads(cnn_record.read_text())
        minutes["plain_cnn"] = cnn_scores["minutes"]
    size = load_config(args.stage1_config, args.overrides).data.image_size
    calibration = calibrate(model, paths["ferplus"])  # before the figures: the stills' probabilities are calibrated
    metrics = {"recipe": {"stage1": [args.stage1_config, *args.overrides], "stage2": [args.config, *args.overrides],
                          "stage1_epochs": epochs[0], "stage2_epochs": epochs[1], "plain_cnn_epochs": cnn_epochs,
                          "plain_cnn": "bench/plain_cnn_floor.py", "margin": args.margin, "seed": args.seed,
                          "minutes": minutes, "train_minutes": round(sum(minutes.values()), 1)},
               "ferplus_test": scores(model, paths["ferplus"]),
               "ferplus_test_stage1": scores(stage1, paths["ferplus"]),
               "plain_cnn_ferplus_test": cnn_scores,
               "hog_floor_ferplus_test": hog_floor(str(paths["ferplus"]), size=size),
               "real_faces_test": scores(model, paths["muxspace"]),
               "hog_floor_real_faces_test": hog_floor(str(paths["muxspace"])),
               "synthetic_test": scores(model, paths["synth"]), "stills": stills(model), "calibration": calibration}
    metrics["recipe"]["build_minutes"] = round((time.time() - started) / 60 + reused, 1)
    print(json.dumps(metrics, indent=2, default=float))
    (work / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    if args.install:
        install(work, metrics)


if __name__ == "__main__":
    main()
