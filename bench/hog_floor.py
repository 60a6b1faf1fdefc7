"""The classic floor on a converted dataset: HOG features + a linear SVM, fitted on train + val, scored on test.

    python bench/hog_floor.py data/muxspace [--size 64] [--c 0.01]

Same crops and split as the job (the dataset's own), so its accuracy and UAR sit beside the model's from
`python jobs/train.py` on that dataset. Each clip's peak frame is used (a still image is a 1-frame clip).
"""

from __future__ import annotations

import argparse

import numpy as np


def peak_frames(root: str, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each clip's peak frame, grey at `size` px: `(N, size, size)` uint8 images and `(N,)` label indices."""
    import cv2

    from classemo.data.format import read_split

    table = read_split(root, split)
    images, labels = [], []
    for frames, peak, label in zip(table.column("frames").to_pylist(), table.column("peak_index").to_pylist(),
                                   table.column("label_idx").to_pylist()):
        image = cv2.imdecode(np.frombuffer(frames[min(peak, len(frames) - 1)], np.uint8), cv2.IMREAD_GRAYSCALE)
        images.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
        labels.append(label)
    return np.stack(images) if images else np.zeros((0, size, size), np.uint8), np.asarray(labels)


def features(root: str, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """HOG of each clip's peak frame (grey, `size` px): `(N, D)` features and `(N,)` labels."""
    import cv2

    hog = cv2.HOGDescriptor((size, size), (size // 4, size // 4), (size // 8, size // 8), (size // 8, size // 8), 9)
    images, labels = peak_frames(root, split, size)
    return np.asarray([hog.compute(image).ravel() for image in images], np.float32), labels


def hog_floor(root: str, *, size: int = 64, c: float = 0.01) -> dict:
    """Fit on the dataset's train + val, score on its test split: accuracy, UAR, per-class accuracy and counts."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from classemo.data.format import read_manifest

    names = list(read_manifest(root).label_set.names)
    parts = [features(root, s, size) for s in ("train", "val", "test")]
    x_fit, y_fit = np.concatenate([parts[0][0], parts[1][0]]), np.concatenate([parts[0][1], parts[1][1]])
    x_test, y_test = parts[2]
    scaler = StandardScaler().fit(x_fit)
    svm = LinearSVC(C=c, max_iter=5000).fit(scaler.transform(x_fit), y_fit)
    pred = svm.predict(scaler.transform(x_test))
    per_class = {n: float((pred[y_test == i] == i).mean()) for i, n in enumerate(names) if (y_test == i).any()}
    return {"accuracy": float((pred == y_test).mean()), "uar": float(np.mean(list(per_class.values()))),
            "per_class": per_class, "num_fit": int(len(y_fit)), "num_test": int(len(y_test)),
            "test_counts": {n: int((y_test == names.index(n)).sum()) for n in per_class}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="converted dataset (local path)")
    ap.add_argument("--size", type=int, default=64, help="side the crops are resized to for HOG")
    ap.add_argument("--c", type=float, default=0.01, help="the SVM's C")
    args = ap.parse_args()

    out = hog_floor(args.root, size=args.size, c=args.c)
    print(f"HOG + linear SVM on {args.root}: fit on {out['num_fit']} (train + val), test {out['num_test']}")
    print(f"accuracy {out['accuracy']:.3f}, UAR {out['uar']:.3f}")
    print("per class: " + ", ".join(f"{n} {a:.2f} (n={out['test_counts'][n]})" for n, a in out["per_class"].items()))


if __name__ == "__main__":
    main()
