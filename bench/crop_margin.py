"""How tight should the face path cut FER+ faces? One plain CNN, the same images and budget, crops cut several ways.

FER2013's 48 px images are tighter than the face path's aligned crop: at margin 0.2 a FER+ face fills only about
half of the crop, so a 48 px model reads it at about 25 px. This trains the same small CNN (pure PyTorch, no Ray:
the crops are the only variable) on the first `--train` FER+ train faces and scores the first `--test` test faces
(majority labels, the paper's seven classes), for the raw images and for aligned crops at each margin. YuNet runs
once per image; every margin warps the same five landmarks. A face with no usable landmarks falls back to the whole
image, as the converter does.

    python bench/crop_margin.py --ferplus ../shared/data/ferplus/data --margins 0.2 0.1 0 -0.1
    python bench/crop_margin.py --ferplus ... --margins 0.2 --variants 0.2 --models plain classemo_tiny cnn_gru_tiny
    python bench/crop_margin.py --ferplus ... --margins 0 --variants 0 --train 30000 --test 4000 \
        --models plain classemo_tiny 'classemo_tiny:{"stem_depth": [1, 2, 2]}' --cache runs/ferplus_crops.npz

A registered model takes keyword arguments as `name:{json}`. `--cache` keeps the crops, so a second run skips YuNet.
`--cost-only` times each model's forward on 30 faces (no data, no training), for the speed budget of `analyze`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from classemo.data.convert_ferplus import DEFAULT_MAP, _read_label_csv, prepare_face, vote_winner
from classemo.faces import FacePath, FaceSettings
from classemo.faces.crop import ARCFACE_TEMPLATE, similarity_transform, usable_landmarks
from classemo.labels import PAPER_LABELS

SIZE = 48


def warp(frame: np.ndarray, landmarks: np.ndarray, margin: float) -> np.ndarray:
    template = (ARCFACE_TEMPLATE + margin) / (1 + 2 * margin) * SIZE
    m = similarity_transform(np.asarray(landmarks, np.float64), template)
    return cv2.warpAffine(frame, m, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def load(root: Path, folder: str, limit: int, margins: list[float], path: FacePath) -> tuple[dict, np.ndarray, int]:
    """Grey crops per variant ("raw" and each margin) and labels, for the first `limit` labelled faces."""
    crops: dict[str, list[np.ndarray]] = {"raw": [], **{str(m): [] for m in margins}}
    labels, fallbacks = [], 0
    for name, votes in _read_label_csv(root / folder / "label.csv", None):
        if votes is None:
            continue
        label, _ = vote_winner(votes, DEFAULT_MAP, "majority")
        if label is None:
            continue
        grey = cv2.imread(str(root / folder / name), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            continue
        frame = prepare_face(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
        boxes = [b for b in path.detect(frame) if usable_landmarks(b.landmarks)]
        crops["raw"].append(cv2.resize(grey, (SIZE, SIZE)))
        for m in margins:
            crops[str(m)].append(cv2.cvtColor(warp(frame, boxes[0].landmarks, m), cv2.COLOR_BGR2GRAY) if boxes
                                 else cv2.resize(grey, (SIZE, SIZE)))
        fallbacks += not boxes
        labels.append(PAPER_LABELS.index(label))
        if len(labels) >= limit:
            break
    return {k: np.stack(v) for k, v in crops.items()}, np.array(labels), fallbacks


def plain_cnn(n_classes: int) -> nn.Module:
    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1),
                nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128), nn.Flatten(), nn.Dropout(0.3),
                         nn.Linear(128 * 6 * 6, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, n_classes))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-3, 4, (2,), generator=gen))
    return torch.roll(x, (dy, dx), (-2, -1))


class ClipModel(nn.Module):
    """A registered clip model (the paper's or a comparison model) on 1-frame clips of grey crops: its clip logits."""

    def __init__(self, name: str, n_classes: int, **kwargs: object) -> None:
        super().__init__()
        from classemo.models import create_model

        extra = {"grayscale": True} if name.startswith("classemo") else {}
        self.net = create_model(name, num_classes=n_classes, image_size=SIZE, num_frames=1, **extra, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1)[:, None])["logits"]


def build(spec: str, n_classes: int) -> nn.Module:
    """"plain", a registered model's name, or `name:{json keyword arguments}`."""
    if spec == "plain":
        return plain_cnn(n_classes)
    name, _, kwargs = spec.partition(":")
    try:
        return ClipModel(name, n_classes, **(json.loads(kwargs) if kwargs else {}))
    except json.JSONDecodeError as err:
        raise SystemExit(f"model {spec!r}: the keyword arguments after ':' are not JSON ({err})") from None


def train_and_score(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, epochs: int,
                    seed: int, model_name: str = "plain", names: Sequence[str] = PAPER_LABELS,
                    progress: bool = False) -> dict:
    """Train `model_name` on grey 48 px crops `xtr` (hard labels `ytr`), score it on `xte`: accuracy, UAR, per class,
    and the forward's median time on 30 test faces (the threads torch has)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build(model_name, len(names))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(xtr) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    to_t = lambda a: (torch.from_numpy(a).float()[:, None] / 255.0 - 0.5) / 0.25  # noqa: E731
    xt, yt = to_t(xtr), torch.from_numpy(ytr).long()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        if progress:
            print(f"{model_name}: epoch {epoch + 1}/{epochs}, {time.perf_counter() - t0:.0f} s", flush=True)
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order) - 63, 64):
            idx = order[i:i + 64]
            loss = nn.functional.cross_entropy(model(augment(xt[idx], gen)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(to_t(xte[i:i + 256])).argmax(1) for i in range(0, len(xte), 256)]).numpy()
        train_s = time.perf_counter() - t0
    per_class = {names[c]: float((pred[yte == c] == c).mean()) for c in np.unique(yte)}
    return {"accuracy": float((pred == yte).mean()), "uar": float(np.mean(list(per_class.values()))),
            "per_class": per_class, "train_s": train_s, "forward_30_faces_ms": forward_ms(model, to_t(xte[:30])),
            "params": sum(p.numel() for p in model.parameters())}


def _cache_key(args: argparse.Namespace) -> str:
    return json.dumps({"margins": args.margins, "train": args.train, "test": args.test})


def _write_cache(path: Path, args: argparse.Namespace, tr: dict, ytr: np.ndarray, te: dict, yte: np.ndarray,
                 fb_tr: int, fb_te: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, key=_cache_key(args), ytr=ytr, yte=yte, fallbacks=np.array([fb_tr, fb_te]),
                        **{f"tr/{k}": v for k, v in tr.items()}, **{f"te/{k}": v for k, v in te.items()})


def _read_cache(path: Path, args: argparse.Namespace) -> tuple[dict, np.ndarray, dict, np.ndarray, int, int]:
    with np.load(path) as z:
        if str(z["key"]) != _cache_key(args):
            raise SystemExit(f"{path} holds crops for {z['key']}, not {_cache_key(args)}: remove it or name another")
        tr = {k[3:]: z[k] for k in z.files if k.startswith("tr/")}
        te = {k[3:]: z[k] for k in z.files if k.startswith("te/")}
        fb_tr, fb_te = (int(v) for v in z["fallbacks"])
        return tr, z["ytr"], te, z["yte"], fb_tr, fb_te


def forward_ms(model: nn.Module, faces: torch.Tensor, repeats: int = 9) -> float:
    """Median milliseconds of one eval forward of `faces` (30 of them: a classroom frame, where analyze spends it)."""
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            model(faces)
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ferplus", type=Path, help="the FERPlus layout (FER2013Train/, FER2013Test/)")
    ap.add_argument("--margins", type=float, nargs="+", default=[0.2, 0.1, 0.0, -0.1])
    ap.add_argument("--train", type=int, default=8000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", default=["plain"],
                    help="plain (the 1.2 M CNN here) and/or registered models, e.g. classemo_tiny cnn_gru_tiny")
    ap.add_argument("--variants", nargs="*", help="which crops to train on (raw and/or margins; default: all)")
    ap.add_argument("--out", type=Path, default=Path("runs/crop_margin.json"))
    ap.add_argument("--cache", type=Path, help="an .npz of the crops: written on the first run, read after")
    ap.add_argument("--cost-only", action="store_true",
                    help="no data, no training: each model's parameters and forward time on 30 random faces")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.cost_only:
        faces = torch.randn(30, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
        for name in args.models:
            model = build(name, len(PAPER_LABELS))
            print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
                  f"{forward_ms(model, faces, repeats=21):.1f} ms for 30 faces (median of 21)", flush=True)
        return
    t0 = time.perf_counter()
    if args.cache and args.cache.exists():
        tr, ytr, te, yte, fb_tr, fb_te = _read_cache(args.cache, args)
    else:
        if args.ferplus is None:
            raise SystemExit("--ferplus is required (the FERPlus folder), unless --cost-only or a --cache that exists")
        path = FacePath(FaceSettings(size=SIZE))
        tr, ytr, fb_tr = load(args.ferplus, "FER2013Train", args.train, args.margins, path)
        te, yte, fb_te = load(args.ferplus, "FER2013Test", args.test, args.margins, path)
        if args.cache:
            _write_cache(args.cache, args, tr, ytr, te, yte, fb_tr, fb_te)
    print(f"cropped {len(ytr)} train and {len(yte)} test faces in {time.perf_counter() - t0:.0f} s; "
          f"fell back to the whole image: {fb_tr} train, {fb_te} test", flush=True)
    results = {}
    for name in args.models:
        for variant in [v if v == "raw" else str(float(v)) for v in args.variants] if args.variants else list(tr):
            key = variant if args.models == ["plain"] else f"{name}/{variant}"
            results[key] = r = train_and_score(tr[variant], ytr, te[variant], yte, args.epochs, args.seed, name,
                                                progress=True)
            print(f"{key:>5}: accuracy {r['accuracy']:.3f}  UAR {r['uar']:.3f}  ({r['train_s']:.0f} s, "
                  f"{r['params'] / 1e6:.2f} M parameters, {r['forward_30_faces_ms']:.1f} ms for 30 faces)", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)  # after each model: a cut-off run keeps its rows
            args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                           indent=1))
    cv2.imwrite(str(args.out.with_suffix(".png")), np.vstack([np.hstack(list(v[:16])) for v in tr.values()]))


if __name__ == "__main__":
    main()
