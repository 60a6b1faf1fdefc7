"""The hand-read faces (tests/fixtures/handread/faces.csv) through the face path and a model: attention, readability
and readings against what a person saw.

Per face: YuNet finds it again (the box of the CSV, best overlap), the face path gives its pose, attention state and
readability, and the model reads its crop as a 1-frame clip. Printed:

- attention: the share of faces whose state matches the person's (all faces, and the clear ones);
- negative misreads: of the faces the person saw no negative expression on, the share read as negative — by the
  model's arg-max on every face (how classemo read faces before readability and readings) and by a reading on
  readable faces only (what the measures use now: calibrated, hesitant readings neutral);
- smiles: of the faces the person saw smile, the share read as positive, the same two ways.

    python bench/handread.py [--model builtin] [--json runs/handread.json]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np

from classemo.analytics import AnalyticsConfig, readings
from classemo.faces.box import FaceBox
from classemo.faces.reading import ReadingConfig, attention_state, unread_reason
from classemo.video.decode import read_frame

ROOT = Path(__file__).resolve().parents[1]
HANDREAD = ROOT / "tests" / "fixtures" / "handread" / "faces.csv"
MEDIA = ROOT / "tests" / "fixtures" / "media"


def handread_faces(face_path: object, reading: ReadingConfig | None = None) -> list[dict]:
    """Each hand-read face with what the face path makes of it: its FaceBox, crop (BGR), pose, state and
    readability. A face YuNet does not find again (best overlap under 0.5) gets state "missed"."""
    reading = reading or ReadingConfig()
    out, frames = [], {}
    with open(HANDREAD, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        key = (r["source"], r["time_s"])
        if key not in frames:
            frame = read_frame(MEDIA / r["source"], float(r["time_s"]) if r["time_s"] else None)
            boxes = face_path.detect(frame)  # type: ignore[attr-defined]
            frames[key] = (frame, boxes, face_path.describe(frame, boxes))  # type: ignore[attr-defined]
        frame, boxes, described = frames[key]
        truth = FaceBox(int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]))
        ious = [truth.iou(b) for b in boxes]
        item = {**r, "state": "missed", "readable": False, "box": None, "crop": None}
        if ious and max(ious) >= 0.5:
            k = int(np.argmax(ious))
            score, yaw, pitch, roll, sharp = described[k]
            state = attention_state(yaw, pitch, reading)
            reason = unread_reason(state, min(boxes[k].w, boxes[k].h), score, sharp, reading)
            item.update(state=state, readable=reason == "", unread_reason=reason, yaw=yaw, pitch=pitch, roll=roll,
                        box=boxes[k], crop=face_path.crop(frame, boxes[k])[0])  # type: ignore[attr-defined]
        out.append(item)
    return out


def score(faces: list[dict], predictor: object | None = None, analytics: AnalyticsConfig | None = None) -> dict:
    """Attention accuracy, and with a model the negative misreads and smiles read, before and after."""
    truth = np.array([f["attention"] for f in faces])
    state = np.array([f["state"] for f in faces])
    clear = np.array(["borderline" not in f["note"] for f in faces])
    out = {"faces": len(faces), "attention_accuracy": float(np.mean(state == truth)),
           "attention_accuracy_clear": float(np.mean(state[clear] == truth[clear])),
           "per_state": {k: float(np.mean(state[truth == k] == k)) for k in ("front", "down", "away")},
           "readable_share": float(np.mean([f["readable"] for f in faces]))}
    if predictor is None:
        return out
    found = [f for f in faces if f["crop"] is not None]
    preds = predictor.predict([[cv2.cvtColor(f["crop"], cv2.COLOR_BGR2RGB)] for f in found])  # type: ignore
    probs = np.stack([p.probs for p in preds])
    label_set = predictor.label_set  # type: ignore[attr-defined]
    pol = np.array([label_set.polarity[label_set.names[i]] for i in probs.argmax(axis=1)])
    read = readings(probs, label_set, analytics or AnalyticsConfig(), np.array([f["state"] for f in found]))
    readable = np.array([f["readable"] for f in found])
    negative = np.array([f["negative"] == "yes" for f in found])
    smiling = np.array([f["smiling"] == "yes" for f in found])
    out.update(
        calibration_temperature=float(getattr(predictor, "temperature", 1.0)),
        # Before: every face, arg-max polarity. After: readable faces only, readings.
        not_negative_read_negative_before=float(np.mean(pol[~negative] == "negative")),
        not_negative_read_negative_after=float(np.sum((read == "negative") & readable & ~negative)
                                               / max(1, np.sum(~negative))),
        smiles_read_positive_before=float(np.mean(pol[smiling] == "positive")),
        smiles_read_positive_after=float(np.sum((read == "positive") & readable & smiling) / max(1, smiling.sum())),
        smiles_readable_read_positive_after=float(np.mean(read[smiling & readable] == "positive"))
        if (smiling & readable).any() else None,
        negatives_read_negative_after=float(np.mean(read[negative & readable] == "negative"))
        if (negative & readable).any() else None,
    )
    return out


def main() -> None:
    from classemo.predictor import Predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    predictor = Predictor.from_checkpoint(args.model)
    faces = handread_faces(predictor.face_path())
    result = score(faces, predictor)
    print(json.dumps(result, indent=2))
    for f in faces:
        print(f"{f['source'][:18]:18s} {f['time_s']:>5s} {f['attention']:6s} -> {f['state']:7s} "
              f"{'' if f['readable'] else f.get('unread_reason', '')} {f['note']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
