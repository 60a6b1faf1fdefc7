"""Fit the built-in model's softmax temperature on FER+ valid, and measure ECE before and after on valid and test.

    python scripts/calibrate_builtin.py [--data data/builtin-build/ferplus] [--model classemo/builtin] [--plots DIR]

`--data` is FER+ converted as scripts/build_builtin_model.py converts it (the model's face path, margin 0); it is
converted there first when missing (the images never go into the repository). The temperature is fitted by the
library step the training job runs (`classemo.evaluate.calibrate_checkpoint`: the clips through `Predictor`, the same
preprocessing, the majority labels) and written into `<model>/config.json`; the figures go into
`<model>/metrics.json` under "calibration" and the paragraph into `<model>/MODEL_CARD.md`, "## Calibration"; the
labelled stills' probabilities, which the temperature changes, are measured again. scripts/build_builtin_model.py
runs the same `calibrate` on every rebuild.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from build_builtin_model import CROP_SIZE, classemo, stills, stills_summary  # this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CLASSEMO_DATA_DIR", ROOT.parent / "shared" / "data"))
FIT_SPLIT, SPLITS = "val", ("val", "test")
CARD_SECTION = "## Calibration"


def split_figures(logits: Any, targets: Any, temperature: float) -> dict[str, Any]:
    """ECE and NLL at T = 1 and at `temperature`, and the accuracy and UAR, which the temperature cannot change."""
    import torch
    import torch.nn.functional as F

    from classemo.calibration import expected_calibration_error
    from classemo.metrics import classification_metrics

    z, y = torch.from_numpy(logits).double(), torch.from_numpy(targets)
    cls = classification_metrics(z.argmax(1), y, z.shape[1])
    out: dict[str, Any] = {"num_samples": len(y), "accuracy": cls["accuracy"], "uar": cls["uar"]}
    for when, t in (("before", 1.0), ("after", temperature)):
        out[f"ece_{when}"] = expected_calibration_error((z / t).softmax(-1), y)
        out[f"nll_{when}"] = float(F.cross_entropy(z / t, y))
    return out


def calibrate(model: Path, data: Path, *, plots: Path | None = None) -> dict[str, Any]:
    """Fit T on FER+ valid into `model`'s config.json; its figures on valid and test (the `calibration` of
    metrics.json). Checked against `classemo evaluate`'s own path on test: the same accuracy and UAR, and ECE after."""
    from classemo.calibration import NUM_BINS, plot_reliability
    from classemo.evaluate import calibrate_checkpoint, evaluate_dataset, load_for, split_logits

    record = calibrate_checkpoint(model, str(data), split=FIT_SPLIT)
    if record is None:
        raise SystemExit(f"{data} holds no {FIT_SPLIT} clips to fit the temperature on")
    t = record["temperature"]
    predictor = load_for(str(model), str(data))
    out: dict[str, Any] = {"method": record["method"], "temperature": round(t, 4), "fitted_on": f"FER+ {FIT_SPLIT}",
                           "targets": "majority labels", "num_bins": NUM_BINS}
    for split in SPLITS:
        logits, targets = split_logits(predictor, str(data), split)
        out[split] = split_figures(logits, targets, t)
        if plots is not None:
            for when, temp in (("before", 1.0), ("after", t)):
                plot_reliability(logits / temp, targets, title=f"FER+ {split}, {when} (T = {temp:.2f})",
                                 path=plots / f"reliability_{split}_{when}.png")
    served = evaluate_dataset(str(model), str(data), split="test")
    for key, want in (("accuracy", out["test"]["accuracy"]), ("uar", out["test"]["uar"]),
                      ("ece", out["test"]["ece_after"])):
        if abs(served[key] - want) > 1e-4:
            raise SystemExit(f"classemo evaluate reads test {key} {served[key]:.4f}, the logits {want:.4f}")
    return out


def card_paragraph(calibration: dict[str, Any]) -> str:
    """The model card's calibration paragraph, from metrics.json's `calibration`."""
    val, test, t = calibration["val"], calibration["test"], calibration["temperature"]
    effect = ("T < 1: the model was under-confident, and T sharpens its probabilities" if t < 1 else
              "T > 1: the model was over-confident, and T softens its probabilities")
    return (f"{CARD_SECTION}\n\nThe class probabilities are **temperature-scaled**: `config.json` holds `calibration` "
            f"(T = {t:.3f}, fitted on {calibration['fitted_on']} by minimising the NLL of the majority labels; "
            f"`scripts/calibrate_builtin.py`), and `Predictor` divides the logits by T before the softmax, so "
            f"`analyze`, `live` and Serve read calibrated probabilities ({effect}). Expected calibration error "
            f"({calibration['num_bins']} bins): FER+ val {val['ece_before']:.3f} -> {val['ece_after']:.3f}, "
            f"FER+ test {test['ece_before']:.3f} -> **{test['ece_after']:.3f}**; accuracy and UAR are unchanged "
            f"(the arg-max is the same). The stills' probabilities above are calibrated ones.\n")


def write_card(card: Path, calibration: dict[str, Any], still_figures: dict[str, Any]) -> None:
    """Put the calibration paragraph into MODEL_CARD.md, in place of an older one or before "## Limits", and the
    stills' calibrated probabilities into its stills line."""
    text = re.sub(r"^(Labelled stills of .*?\(largest face\): ).*$",
                  lambda m: f"{m.group(1)}{stills_summary(still_figures)}.", card.read_text(), count=1, flags=re.M)
    paragraph = card_paragraph(calibration)
    if CARD_SECTION in text:
        text = re.sub(rf"{CARD_SECTION}\n.*?(?=\n## )", paragraph.rstrip("\n") + "\n", text, flags=re.S)
    else:
        text = text.replace("## Limits", f"{paragraph}\n## Limits", 1)
    card.write_text(text)


def convert_ferplus(data: Path) -> None:
    """FER+ as the built-in model's build converts it (scripts/build_builtin_model.py `build_data`, margin 0)."""
    cmd = classemo("data", "convert", "ferplus", str(DATA_DIR / "ferplus" / "data"), "--out", str(data),
                   "--image-size", str(CROP_SIZE), "--margin", "0.0", "--no-progress")
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "builtin-build" / "ferplus",
                    help="FER+ converted with the built-in model's face settings (converted here when missing)")
    ap.add_argument("--model", type=Path, default=ROOT / "classemo" / "builtin", help="checkpoint directory")
    ap.add_argument("--plots", type=Path, help="also write reliability diagrams (before/after, valid/test) here")
    args = ap.parse_args()
    if not (args.data / "manifest.json").exists():
        convert_ferplus(args.data)
    calibration = calibrate(args.model, args.data, plots=args.plots)
    print(json.dumps(calibration, indent=2))
    metrics_path = args.model / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics.update(calibration=calibration, stills=stills(args.model))
    metrics_path.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    if (args.model / "MODEL_CARD.md").exists():
        write_card(args.model / "MODEL_CARD.md", calibration, metrics["stills"])
    print(f"calibration written into {args.model}/config.json, metrics.json and MODEL_CARD.md")


if __name__ == "__main__":
    main()
