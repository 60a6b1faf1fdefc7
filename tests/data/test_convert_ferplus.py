"""The FER+ converter on a FERPlus-layout folder built in the test (48x48 grey crops of committed faces-muxspace
photos; no FER+ image is ever copied into the repository), and on the real data set when CLASSEMO_DATA_DIR holds it."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from classemo.cli import app
from classemo.data.convert_ferplus import convert_ferplus, prepare_face
from classemo.data.format import SCHEMA, SPLITS, read_split, write_dataset
from classemo.faces import FacePath, FaceSettings
from classemo.labels import LabelSet
from helpers import MUXSPACE_FACES, MUXSPACE_SUBSET, require_data_set

LABELS = LabelSet.paper()
# Votes in label.csv order: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
HAPPY = [0, 8, 1, 0, 0, 0, 0, 0, 1, 0]
SAD = [0, 0, 0, 8, 2, 0, 0, 0, 0, 0]
SURPRISE = [0, 1, 9, 0, 0, 0, 0, 0, 0, 0]
SPLIT_VOTE = [4, 3, 3, 0, 0, 0, 0, 0, 0, 0]  # no majority; neutral by plurality
CONTEMPT = [3, 0, 0, 0, 0, 0, 0, 7, 0, 0]
NOT_A_FACE = [0, 0, 0, 0, 0, 0, 0, 0, 1, 9]
# The measured rate on the first 500 FER+ train images is 97.4%; the bound leaves room for the other 200-row slices.
REAL_DETECTION_BOUND = 0.93


def _fer_face(i: int) -> np.ndarray:
    """A FER2013-like image: the face's tight box from a committed photo, 48x48 grey."""
    image = cv2.imread(str(MUXSPACE_SUBSET / "images" / MUXSPACE_FACES[i]))
    box = FacePath(FaceSettings()).detect(image)[0]
    face = image[max(0, box.y) : box.y + box.h, max(0, box.x) : box.x + box.w]
    return cv2.cvtColor(cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)


def _write_split(folder: Path, rows: list[tuple[str, np.ndarray | bytes | None, list[int]]]) -> None:
    folder.mkdir(parents=True)
    with open(folder / "label.csv", "w", newline="") as f:
        writer = csv.writer(f)
        for name, image, votes in rows:
            writer.writerow([name, "(0, 0, 48, 48)", *votes])
            if isinstance(image, bytes):
                (folder / name).write_bytes(image)
            elif image is not None:
                cv2.imwrite(str(folder / name), image)


@pytest.fixture(scope="module")
def ferplus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ferplus")
    faces = [_fer_face(i) for i in range(5)]
    ramp = np.tile(np.linspace(30, 220, 48, dtype=np.uint8), (48, 1))
    _write_split(root / "FER2013Train", [
        ("fer0.png", faces[0], HAPPY),
        ("fer1.png", faces[4], SAD),  # the same pixels as the test image: the test copy is kept
        ("fer2.png", ramp, NOT_A_FACE),
        ("fer3.png", faces[1], SPLIT_VOTE),
        ("fer4.png", b"\x89PNG\r\n\x1a\n not really a PNG", HAPPY),
        ("fer5.png", None, HAPPY),  # listed, not on disk
        ("fer6.png", faces[2], CONTEMPT),
        ("fer7.png", faces[0], HAPPY),  # duplicate within train
    ])
    _write_split(root / "FER2013Valid", [("fer8.png", faces[3], SURPRISE)])
    _write_split(root / "FER2013Test", [("fer9.png", faces[4], SAD)])
    return root


def _rows(root: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for s in SPLITS for r in read_split(root, s).to_pylist()}


def _rejected(root: Path) -> dict[str, str]:
    with open(root / "rejected.csv", newline="") as f:
        return {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}


def test_majority_counts_soft_labels_and_duplicates(ferplus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest, summary = convert_ferplus(ferplus, str(out), progress=False)
    assert summary.inputs == 10 == summary.converted + summary.rejected
    assert summary.converted == 3 == summary.face_found + summary.whole_image_fallback
    assert summary.reasons == {"duplicate": 2, "not a face": 1, "no majority": 1, "unreadable image": 1,
                               "file not found": 1, "winning vote contempt dropped by label map": 1}
    rows = _rows(out)
    assert set(rows) == {"train/fer0", "val/fer8", "test/fer9"}
    assert manifest.counts == {"train": 1, "val": 1, "test": 1}
    assert {r["label"] for r in rows.values()} == {"happy", "positive", "sad"}
    assert rows["train/fer0"]["subject_id"] == "fer0.png"  # FER+ has no person ids: the image name stands in
    rejected = _rejected(out)
    assert rejected["fer1.png"] == "duplicate of test/fer9.png"
    assert rejected["fer7.png"] == "duplicate of train/fer0.png"
    assert rejected["fer2.png"].startswith("not a face")
    # Soft labels: one probability per label in class-index order, over the mapped votes (unknown left out).
    sad = rows["test/fer9"]["soft_label"]
    assert len(sad) == len(LABELS.names) and sum(sad) == pytest.approx(1.0)
    assert sad[LABELS.index("sad")] == pytest.approx(0.8) and sad[LABELS.index("anger")] == pytest.approx(0.2)
    happy = rows["train/fer0"]["soft_label"]
    assert happy[LABELS.index("happy")] == pytest.approx(8 / 9) and happy[LABELS.index("positive")] == \
        pytest.approx(1 / 9)
    assert manifest.extra["conversion"]["whole_image_fallback"] == summary.whole_image_fallback


def test_plurality_and_label_map(ferplus: Path, tmp_path: Path) -> None:
    _, summary = convert_ferplus(ferplus, str(tmp_path / "p"), label_rule="plurality", progress=False)
    assert _rows(tmp_path / "p")["train/fer3"]["label"] == "neutral"
    assert "no majority" not in summary.reasons and summary.converted == 4
    _, summary = convert_ferplus(ferplus, str(tmp_path / "m"), label_map={"contempt": "disgust"}, progress=False)
    row = _rows(tmp_path / "m")["train/fer6"]
    assert row["label"] == "disgust"
    assert row["soft_label"][LABELS.index("disgust")] == pytest.approx(0.7)
    assert row["soft_label"][LABELS.index("neutral")] == pytest.approx(0.3)
    assert summary.inputs == summary.converted + summary.rejected


def test_crop_is_the_face_path_crop(ferplus: Path, tmp_path: Path) -> None:
    """Parity: the stored crop is what the Predictor's `FacePath` cuts from the same image's prepared frame."""
    settings = FaceSettings(size=64, margin=0.2)
    manifest, _ = convert_ferplus(ferplus, str(tmp_path / "out"), image_size=64, margin=0.2, progress=False)
    assert manifest.face == settings.to_dict()
    frame = read_split(tmp_path / "out", "test").column("frames").to_pylist()[0][0]
    stored = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR)
    image = cv2.imread(str(ferplus / "FER2013Test" / "fer9.png"))
    found = FacePath(settings).faces(prepare_face(image))
    assert found, "the face path finds the face in the prepared frame"
    assert np.array_equal(found[0].crop, stored)


def test_old_shards_without_soft_label_still_read(tmp_path: Path) -> None:
    write_dataset([], tmp_path, LABELS, image_size=48, source="old", converter_version="x/1")
    old = pa.schema([f for f in SCHEMA if f.name != "soft_label"])
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    row = {"clip_id": "a", "subject_id": None, "source": "old", "split": "train", "frames": [png.tobytes()],
           "fps": 1.0, "peak_index": 0, "label": "sad", "label_idx": LABELS.index("sad"), "valence": None,
           "arousal": None, "frame_valence": None, "frame_arousal": None, "va_source": "none"}
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "train" / "part-00000.parquet")
    assert read_split(tmp_path, "train").to_pylist()[0]["soft_label"] is None


def test_cli(ferplus: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["data", "convert", "ferplus", str(ferplus), "--out", str(tmp_path / "o"),
                              "--limit", "3", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "ferplus: 5 images in" in res.output  # 3 train rows, 1 valid, 1 test
    bad = runner.invoke(app, ["data", "convert", "ferplus", str(tmp_path), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
    message = bad.output.strip()
    assert "not a FERPlus folder" in message and "\n" not in message and "Traceback" not in message


def test_real_ferplus_detection_rate(tmp_path: Path) -> None:
    src = require_data_set("ferplus") / "data"
    _, summary = convert_ferplus(src, str(tmp_path / "out"), limit=200, progress=False)
    assert summary.inputs == 600 == summary.converted + summary.rejected
    rate = summary.face_found / summary.converted
    assert rate >= REAL_DETECTION_BOUND, summary.format()
