"""Cut the faces of the hand-read set out of the real media and tile them into numbered contact sheets.

The hand-read set (tests/fixtures/handread/faces.csv) is a person's reading of real faces: where each face looks
(front, down, away) and whether it smiles or shows a negative expression. This script makes what that person looks
at: every face YuNet finds at the sampled times of each medium, cut with context (2x the box) and enlarged, numbered
in the order of the CSV's rows. It writes the CSV's machine columns (source, time_s, x, y, w, h) and leaves the
reading columns empty for the person to fill in.

    python scripts/handread_sheet.py --out runs/handread            # sheets + faces_unread.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from classemo.faces.detectors import YuNetDetector
from classemo.video.decode import read_frame

MEDIA = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "media"

# (file, times in seconds; None for a still). Spread over each video so that every pose it holds is sampled.
SAMPLES: list[tuple[str, list[float] | None]] = [
    ("classroom_intel.mp4", [1.0, 4.0, 7.0, 10.0, 12.5, 15.0, 17.5, 20.0, 23.0, 26.0, 29.0, 32.0]),
    ("WolfgangLanger_Pexels.mp4", [0.5, 2.0, 3.5, 5.0, 6.5, 8.0, 9.5, 11.0, 12.5, 14.0, 15.5, 17.0, 18.5, 19.5]),
    ("single_face.mp4", [0.5, 2.0]),
    ("multi_face.jpg", None),
    ("single_face.jpg", None),
    ("0-f15-hao-ph.jpg", None),
    ("15-f13-anc-ph.jpg", None),
    ("0-f1-su-ph.jpg", None),
    ("45-m7-di-ph.jpg", None),
]


def context_crop(frame: np.ndarray, box: tuple[int, int, int, int], side: int = 160) -> np.ndarray:
    """The face with one box of context around it, enlarged to `side` px, as a person would look at it."""
    x, y, w, h = box
    s = int(2 * max(w, h))
    cx, cy = x + w // 2, y + h // 2
    padded = cv2.copyMakeBorder(frame, s, s, s, s, cv2.BORDER_CONSTANT)
    patch = padded[cy + s - s // 2: cy + s + s // 2, cx + s - s // 2: cx + s + s // 2]
    return cv2.resize(patch, (side, side), interpolation=cv2.INTER_CUBIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/handread"))
    ap.add_argument("--per-sheet", type=int, default=24)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    detector = YuNetDetector()
    rows, tiles = [], []
    for name, times in SAMPLES:
        for t in times or [None]:
            frame = read_frame(MEDIA / name, t)
            for b in sorted(detector.detect(frame), key=lambda b: b.x):  # left to right
                rows.append({"source": name, "time_s": "" if t is None else t, "x": b.x, "y": b.y, "w": b.w,
                             "h": b.h, "attention": "", "smiling": "", "negative": "", "note": ""})
                tile = context_crop(frame, (b.x, b.y, b.w, b.h))
                cv2.putText(tile, str(len(rows) - 1), (4, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2)
                tiles.append(tile)
    with open(args.out / "faces_unread.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for k in range(0, len(tiles), args.per_sheet):
        group = tiles[k:k + args.per_sheet]
        group += [np.zeros_like(tiles[0])] * (-len(group) % 6)
        sheet = np.vstack([np.hstack(group[i:i + 6]) for i in range(0, len(group), 6)])
        cv2.imwrite(str(args.out / f"sheet_{k // args.per_sheet}.png"), sheet)
    print(f"{len(rows)} faces; sheets and faces_unread.csv in {args.out}")


if __name__ == "__main__":
    main()
