"""The plain-CNN floor on a converted dataset: a plain CNN of the build's budget, on the same crops and split.

    python bench/plain_cnn_floor.py data/builtin-build/ferplus [--epochs 12] [--seed 0]
    python bench/plain_cnn_floor.py data/builtin-build/ferplus --epochs 20 --model classemo_tiny --out runs/x.json

The CNN is bench/crop_margin.py's (three blocks of two 3x3 convs with batch norm, max-pooling, two dense layers:
1.47 M parameters at 48 px, about the paper's model's 1.16 M). It trains in one process (no Ray) on each clip's
peak frame of the train split, grey at 48 px, with its own recipe: hard labels, AdamW 2e-3 with one-cycle, flips
and shifts, batches of 64. It is scored on the test split as the job's model is, so its row sits beside the
model's and HOG's in the build's metrics.json.

`--model` trains a registered model (or `name:{json kwargs}`, as bench/crop_margin.py) in the CNN's place, on its
recipe and crops: the paper's model and the plain CNN then differ in the architecture alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from crop_margin import SIZE, train_and_score
from hog_floor import peak_frames


def plain_cnn_floor(root: str, *, epochs: int, seed: int = 0, progress: bool = True, model: str = "plain") -> dict:
    """Train `model` on `root`'s train split, score on its test split: accuracy, UAR, per-class accuracy, seconds."""
    from classemo.data.format import read_manifest

    names = list(read_manifest(root).label_set.names)
    x_train, y_train = peak_frames(root, "train", SIZE)
    x_test, y_test = peak_frames(root, "test", SIZE)
    if not len(x_train) or not len(x_test):
        raise ValueError(f"{root} needs clips in both its train and test splits, has {len(x_train)} and {len(x_test)}")
    started = time.perf_counter()
    out = train_and_score(x_train, y_train, x_test, y_test, epochs, seed, model, names=names, progress=progress)
    out.update(model=model, num_train=int(len(y_train)), num_samples=int(len(y_test)), epochs=epochs,
               minutes=round((time.perf_counter() - started) / 60, 1))
    out["per_class_accuracy"] = out.pop("per_class")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="converted dataset (local path)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="plain", help="plain, a registered model, or name:{json kwargs}")
    ap.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = ap.parse_args()
    out = plain_cnn_floor(args.root, epochs=args.epochs, seed=args.seed, model=args.model)
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
