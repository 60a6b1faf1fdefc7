"""Synthetic expression clips: rendering, determinism, label and V/A truth, and that pixels alone don't solve it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from classemo.cli import app
from classemo.data.format import read_manifest, read_split
from classemo.labels import PAPER_LABELS, LabelSet
from classemo.synth.clips import MOOD_AROUSAL, MOOD_VALENCE, intensity_course, synth_clips, write_synth_dataset
from classemo.synth.face import FaceIdentity
from classemo.synth.render import render_face

SMALL = dict(clips_per_class=3, num_frames=4, image_size=32, subjects=6)


def _decode(data: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    assert img is not None
    return img


@pytest.fixture(scope="module")
def probe_rows() -> list[dict]:
    """Enough clips over enough identities that a held-out-identity probe means something (~2 s)."""
    return list(synth_clips(clips_per_class=30, num_frames=3, image_size=32, seed=0, subjects=20))


def test_render_face_draws_every_paper_label_differently() -> None:
    ident = FaceIdentity.random(np.random.default_rng(0), "s0")
    faces = {e: render_face(ident, e, 1.0, size=64, rng=np.random.default_rng(1), jitter=0.0) for e in PAPER_LABELS}
    for face in faces.values():
        assert face.shape == (64, 64, 3) and face.dtype == np.uint8
    # Same identity, background and pose: any pixel difference comes from the expression alone.
    for i, a in enumerate(PAPER_LABELS):
        for b in PAPER_LABELS[i + 1:]:
            diff = np.abs(faces[a].astype(int) - faces[b].astype(int)).mean()
            assert diff > 0.3, f"{a} and {b} look the same (mean abs diff {diff:.2f})"


def test_intensity_zero_is_the_neutral_face_and_intensity_scales_the_change() -> None:
    ident = FaceIdentity.random(np.random.default_rng(3), "s3")

    def face(expr: str, level: float) -> np.ndarray:
        return render_face(ident, expr, level, size=48, rng=np.random.default_rng(7), jitter=0.0).astype(int)

    neutral = face("neutral", 1.0)
    assert np.array_equal(face("fear", 0.0), neutral)
    changes = [np.abs(face("happy", lvl) - neutral).mean() for lvl in (0.25, 0.5, 1.0)]
    assert changes[0] < changes[1] < changes[2]


def test_render_face_rejects_bad_input_with_clear_errors() -> None:
    ident = FaceIdentity.random(np.random.default_rng(0), "s0")
    with pytest.raises(ValueError, match="unknown expression 'surprised'"):
        render_face(ident, "surprised", 0.5, size=32, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"intensity must lie in \[0, 1\]"):
        render_face(ident, "happy", 1.5, size=32, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="size must be at least 16"):
        render_face(ident, "happy", 0.5, size=8, rng=np.random.default_rng(0))


def test_haar_finds_rendered_faces_at_classroom_sizes() -> None:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rng = np.random.default_rng(5)
    found = 0
    n = 42
    for i in range(n):
        ident = FaceIdentity.random(rng, f"h{i}")
        face_px = int(rng.integers(44, 121))  # face height; the crop holds the face at 80% of its side
        crop = render_face(ident, PAPER_LABELS[i % 7], float(rng.uniform(0, 1)), size=int(face_px / 0.8), rng=rng)
        canvas = np.full((200, 200, 3), 128, np.uint8)
        canvas[10:10 + crop.shape[0], 10:10 + crop.shape[1]] = crop
        boxes = cascade.detectMultiScale(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(24, 24))
        found += len(boxes) > 0
    assert found / n >= 0.95, f"Haar found {found}/{n} synthetic faces"


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_synth_dataset(str(a), seed=3, **SMALL)
    write_synth_dataset(str(b), seed=3, **SMALL)
    write_synth_dataset(str(c), seed=4, **SMALL)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs between two runs with the same seed"
    frames_a = [f for s in ("train", "val", "test") for r in read_split(a, s).to_pylist() for f in r["frames"]]
    frames_c = [f for s in ("train", "val", "test") for r in read_split(c, s).to_pylist() for f in r["frames"]]
    assert len(frames_a) == len(frames_c)
    assert sum(x == y for x, y in zip(frames_a, frames_c)) == 0


def test_rows_carry_consistent_labels_va_and_peaks(tmp_path: Path) -> None:
    manifest = write_synth_dataset(str(tmp_path / "ds"), seed=0, **SMALL)
    labels = LabelSet.paper()
    assert manifest.source == "synth" and manifest.image_size == 32
    assert sum(manifest.counts.values()) == SMALL["clips_per_class"] * len(labels)
    subjects_by_split = {}
    per_label = dict.fromkeys(labels.names, 0)
    for split in ("train", "val", "test"):
        rows = read_split(tmp_path / "ds", split).to_pylist()
        subjects_by_split[split] = {r["subject_id"] for r in rows}
        for r in rows:
            per_label[r["label"]] += 1
            assert r["va_source"] == "annotated" and r["label_idx"] == labels.index(r["label"])
            assert len(r["frames"]) == SMALL["num_frames"] == len(r["frame_valence"]) == len(r["frame_arousal"])
            assert _decode(r["frames"][0]).shape == (32, 32, 3)
            fv, fa, peak = np.array(r["frame_valence"]), np.array(r["frame_arousal"]), r["peak_index"]
            # The clip-level V/A is the apex frame's.
            assert r["valence"] == pytest.approx(fv[peak]) and r["arousal"] == pytest.approx(fa[peak])
            polarity = labels.polarity[r["label"]]
            if polarity == "neutral":
                # Only the resting mood: constant over the clip, a small valence, arousal from tired to alert.
                assert np.ptp(fv) < 1e-6 and np.ptp(fa) < 1e-6
                assert MOOD_VALENCE[0] <= r["valence"] <= MOOD_VALENCE[1]
                assert MOOD_AROUSAL[0] <= r["arousal"] <= MOOD_AROUSAL[1]
            else:
                # The apex is where the valence is farthest from neutral, on the label's side, and where V/A are
                # closest to the label's own V/A (the mood pulls the frames around the apex away from it).
                assert int(np.argmax(np.abs(fv))) == peak
                assert np.sign(r["valence"]) == (1 if polarity == "positive" else -1), r["clip_id"]
                target = np.array(labels.default_va[r["label"]])
                dist = np.hypot(fv - target[0], fa - target[1])
                assert int(np.argmin(dist)) == peak, r["clip_id"]
    assert per_label == dict.fromkeys(labels.names, SMALL["clips_per_class"])
    for s1, s2 in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not subjects_by_split[s1] & subjects_by_split[s2], f"subjects shared by {s1} and {s2}"
    assert all(subjects_by_split.values())


def test_intensity_course_peaks_exactly_at_peak_index() -> None:
    for peak in range(6):
        course = intensity_course(6, peak, 0.8, width=2.0)
        assert int(np.argmax(course)) == peak and course[peak] == pytest.approx(0.8)
        assert (np.delete(course, peak) < 0.8).all()


def _features(rows: list[dict], feature: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = []
    for r in rows:
        img = _decode(r["frames"][r["peak_index"]], cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        if feature == "gradient":  # landmark-free: a coarse map of edge energy
            gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0), cv2.Sobel(img, cv2.CV_32F, 0, 1)
            img = cv2.resize(np.hypot(gx, gy), (8, 8), interpolation=cv2.INTER_AREA)
        xs.append(img.ravel())
    y = np.array([r["label_idx"] for r in rows])
    train = np.array([r["split"] == "train" for r in rows])
    return np.stack(xs), y, train


def test_linear_probe_on_raw_pixels_does_not_solve_held_out_identities(probe_rows: list[dict]) -> None:
    x, y, train = _features(probe_rows, "pixels")
    assert train.any() and (~train).any()
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-3
    xt, yt = torch.tensor((x - mu) / sd), torch.tensor(y)
    torch.manual_seed(0)
    probe = torch.nn.Linear(x.shape[1], len(PAPER_LABELS))
    opt = torch.optim.Adam(probe.parameters(), lr=1e-3)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(probe(xt[train]), yt[train]).backward()
        opt.step()
    with torch.no_grad():
        train_acc = (probe(xt[train]).argmax(1) == yt[train]).float().mean().item()
        held_out_acc = (probe(xt[~train]).argmax(1) == yt[~train]).float().mean().item()
    assert train_acc > 0.9, "the probe failed to fit its own training set, so its held-out figure means nothing"
    assert held_out_acc < 0.6, f"a linear probe on raw pixels reached {held_out_acc:.2f} on held-out identities"


def test_nearest_class_mean_on_edge_energy_is_not_perfect(probe_rows: list[dict]) -> None:
    x, y, train = _features(probe_rows, "gradient")
    means = np.stack([x[train & (y == c)].mean(0) for c in range(len(PAPER_LABELS))])
    pred = ((x[~train, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == y[~train]).mean() < 0.9


def test_synth_rejects_bad_arguments_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        write_synth_dataset(str(tmp_path / "x"), clips_per_class=2, num_frames=0, image_size=32)
    with pytest.raises(ValueError, match="cannot draw labels \\['bored'\\]"):
        synth_clips(clips_per_class=1, num_frames=2, image_size=32, seed=0, labels=LabelSet(("happy", "bored")))
    assert not (tmp_path / "x").exists()


def test_cli_synth_writes_then_reuses(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["data", "synth", "--out", str(out), "--clips-per-class", "2", "--num-frames", "2", "--image-size", "32",
            "--subjects", "5"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "wrote synthetic dataset" in first.output and "14 clips" in first.output
    stamp = (out / "manifest.json").stat().st_mtime_ns
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0 and "reused existing synthetic dataset" in second.output
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    changed = CliRunner().invoke(app, [*args[:-2], "--subjects", "6"])
    assert changed.exit_code == 0 and "wrote synthetic dataset" in changed.output
    assert read_manifest(out).extra["synth_params"]["subjects"] == 6
    bad = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "bad"), "--image-size", "8"])
    assert bad.exit_code != 0 and "image_size must be at least 16" in bad.output


def test_write_to_s3_and_reuse(s3_bucket: str, tmp_path: Path) -> None:
    root = f"s3://{s3_bucket}/synth"
    kw = dict(clips_per_class=1, num_frames=2, image_size=32, subjects=3, seed=0)
    manifest = write_synth_dataset(root, **kw)
    assert manifest.extra["reused"] is False and sum(manifest.counts.values()) == 7
    local = write_synth_dataset(str(tmp_path / "local"), **kw)
    for split in ("train", "val", "test"):
        assert read_split(root, split).to_pylist() == read_split(tmp_path / "local", split).to_pylist()
    assert write_synth_dataset(root, reuse=True, **kw).extra["reused"] is True
    assert local.counts == read_manifest(root).counts


def test_cli_synth_reports_an_unwritable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(blocker / "ds"), "--clips-per-class", "1",
                                      "--num-frames", "1", "--image-size", "32"])
    assert result.exit_code == 1
    assert f"cannot write to {blocker / 'ds'}" in result.output


def test_a_margin_draws_the_face_as_the_face_path_would_cut_it(tmp_path: Path) -> None:
    """At margin 0 the face fills 1.4x more of the crop than at 0.2 (the aligned template's ratio), the manifest says
    so, and a set drawn at one margin does not merge with one drawn at another (a model runs one face path)."""
    from classemo.data.format import DatasetFormatError
    from classemo.data.merge import merge_datasets
    from classemo.synth.face import action_vector
    from classemo.synth.render import Nuisance, margin_zoom, random_background, render_actions

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rng = np.random.default_rng(2)
    ratios = []
    for i in range(12):
        ident = FaceIdentity.random(rng, f"m{i}")
        actions = action_vector("neutral", 0.0, identity=ident)
        sides, still = [], Nuisance.random(np.random.default_rng(0), 0.0)  # centred, upright, clean
        for zoom in (1.0, margin_zoom(0.0)):
            crop = render_actions(ident, actions, 96, np.random.default_rng(i), still,
                                  random_background(np.random.default_rng(i), 384, 384), zoom=zoom)
            canvas = np.full((300, 300, 3), 128, np.uint8)
            canvas[100:196, 100:196] = crop
            boxes = cascade.detectMultiScale(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY), 1.05, 4, minSize=(20, 20))
            sides.append(max((b[2] for b in boxes), default=0))
        if min(sides):
            ratios.append(sides[1] / sides[0])
    assert len(ratios) >= 8, f"Haar found both faces of only {len(ratios)} of 12 identities"
    assert 1.25 <= float(np.median(ratios)) <= 1.55, ratios  # the template: (1 + 2 x 0.2) / (1 + 2 x 0) = 1.4

    tight = write_synth_dataset(str(tmp_path / "tight"), seed=1, margin=0.0, **SMALL)
    assert tight.face["margin"] == 0.0 and tight.extra["synth_params"]["margin"] == 0.0
    write_synth_dataset(str(tmp_path / "tight2"), seed=2, margin=0.0, **SMALL)
    write_synth_dataset(str(tmp_path / "default"), seed=3, **SMALL)
    assert merge_datasets([str(tmp_path / "tight"), str(tmp_path / "tight2")], str(tmp_path / "m")).face["margin"] == 0
    with pytest.raises(DatasetFormatError, match="face settings"):
        merge_datasets([str(tmp_path / "tight"), str(tmp_path / "default")], str(tmp_path / "m2"))
    # Same seed and sizes, another margin: not the same dataset, so reuse regenerates it.
    again = write_synth_dataset(str(tmp_path / "tight"), seed=1, margin=0.2, reuse=True, **SMALL)
    assert again.extra["reused"] is False and again.face["margin"] == 0.2
    with pytest.raises(ValueError, match="margin"):
        write_synth_dataset(str(tmp_path / "bad"), seed=1, margin=-0.1, **SMALL)
