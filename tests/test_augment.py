"""The StarGAN M_H batch: ratios, targets, the model <-> GAN space round trip and the translation grid."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from classemo.augment import StarGANAugmenter, mix_counts, save_translation_grid
from classemo.checkpoint import CheckpointError, save_checkpoint
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.training.stargan import save_stargan

LABELS = LabelSet(("happy", "sad", "anger", "fear", "neutral"))
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # deliberately not the GAN's 0.5/0.5


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    gan = create_model("stargan_tiny", num_domains=len(LABELS), image_size=32)
    directory = tmp_path_factory.mktemp("gan") / "generator"
    save_stargan(gan, directory, labels=LABELS)
    return str(directory)


@pytest.mark.parametrize(("n_real", "n_gen", "ratio", "expected"), [
    (8, 16, 0.5, (8, 8)), (8, 16, 0.25, (5, 16)), (8, 8, 0.2, (2, 8)), (8, 16, 1.0, (8, 0)), (8, 16, 0.0, (0, 16)),
    (6, 6, 2 / 3, (6, 3)),
])
def test_mix_counts(n_real: int, n_gen: int, ratio: float, expected: tuple[int, int]) -> None:
    assert mix_counts(n_real, n_gen, ratio) == expected
    with pytest.raises(ValueError, match="real_ratio"):
        mix_counts(1, 1, 1.5)


def _peaks(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x01 = torch.rand(n, 3, size, size, generator=g)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x01 - mean) / std, torch.tensor([0, 1, 2, 3, 4, 0])[:n]


@pytest.mark.parametrize(("per_clip", "ratio"), [(2, 0.5), (1, 0.5), (3, 0.25), (2, 0.8)])
def test_mixed_batch_has_ratio_and_correct_targets(generator_dir: str, per_clip: int, ratio: float) -> None:
    aug = StarGANAugmenter.from_checkpoint(generator_dir, per_clip=per_clip, real_ratio=ratio, mean=MEAN, std=STD,
                                           seed=0)
    assert aug.labels == LABELS and aug.image_size == 32
    images, labels = _peaks(6, 48)  # the unified model's size (48) differs from the GAN's (32)
    out, targets = aug(images, labels)
    n_real, n_gen = mix_counts(6, 6 * per_clip, ratio)
    assert out.shape == (n_real + n_gen, 3, 48, 48) and targets.shape == (n_real + n_gen,)
    assert abs(n_real / (n_real + n_gen) - ratio) < 0.1
    # The real part is a subset of the inputs, with their own labels.
    for img, t in zip(out[:n_real], targets[:n_real]):
        match = [i for i in range(6) if torch.equal(images[i], img)]
        assert match and int(labels[match[0]]) == int(t)
    # Every generated frame is G(one input clip, its target) with the target another domain than the clip's:
    # recompute every candidate translation and find the one it equals.
    pairs = [(i, d) for i in range(6) for d in range(len(LABELS))]
    with torch.no_grad():
        src = aug._to_gan(images[[i for i, _ in pairs]])
        translated = aug._from_gan(aug.generator(src, torch.tensor([d for _, d in pairs])), 48)  # (30, 3, 48, 48)
    candidates = dict(zip(pairs, translated))
    per_clip_count = np.zeros(6, int)
    for img, t in zip(out[n_real:], targets[n_real:]):
        found = [(i, d) for (i, d), c in candidates.items() if torch.allclose(c, img, atol=1e-5)]
        assert found, "a generated frame is no translation of any input"
        i, d = found[0]
        assert d == int(t) and d != int(labels[i])
        per_clip_count[i] += 1
    assert per_clip_count.max() <= per_clip


def test_space_conversion_round_trips(generator_dir: str) -> None:
    aug = StarGANAugmenter.from_checkpoint(generator_dir, mean=MEAN, std=STD)
    images, _ = _peaks(2, 32)
    gan_space = aug._to_gan(images)
    assert gan_space.min() >= -1 and gan_space.max() <= 1
    torch.testing.assert_close(aug._from_gan(gan_space, 32), images, atol=1e-5, rtol=1e-5)


def test_no_checkpoint_returns_real_peaks_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    aug = StarGANAugmenter.from_checkpoint(None, per_clip=2, real_ratio=0.5)
    images, labels = _peaks(4, 32)
    with caplog.at_level(logging.WARNING, logger="classemo.augment"):
        for _ in range(3):
            out, targets = aug(images, labels)
            assert torch.equal(out, images) and torch.equal(targets, labels)
    assert caplog.text.count("no StarGAN generator checkpoint") == 1


def test_bad_inputs_are_named(generator_dir: str, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="per_clip=5 asks for more other domains than the 4"):
        StarGANAugmenter.from_checkpoint(generator_dir, per_clip=5)
    with pytest.raises(ValueError, match="real_ratio"):
        StarGANAugmenter.from_checkpoint(generator_dir, real_ratio=-0.1)
    aug = StarGANAugmenter.from_checkpoint(generator_dir)
    with pytest.raises(ValueError, match=r"\(N, 3, S, S\)"):
        aug(torch.zeros(2, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2 peak frames but 3 labels"):
        aug(torch.zeros(2, 3, 32, 32), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        aug(torch.zeros(2, 3, 32, 32), torch.tensor([0, 7]))
    # A unified-model checkpoint is not a generator.
    spec = {"name": "stargan_tiny", "kwargs": {"image_size": 32}}
    other = save_checkpoint(create_model("stargan_tiny", image_size=32), {"model": spec, "kind": "unified"},
                            tmp_path / "other")
    with pytest.raises(CheckpointError, match="not a StarGAN generator"):
        StarGANAugmenter.from_checkpoint(other)


def test_translation_grid_png(generator_dir: str, tmp_path) -> None:  # noqa: ANN001
    import cv2

    aug = StarGANAugmenter.from_checkpoint(generator_dir)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    path = save_translation_grid(aug.generator, images, torch.tensor([0, 2, 4]), LABELS.names, tmp_path / "g.png")
    png = cv2.imread(str(path))
    assert png is not None and png.shape[1] > png.shape[0] > 100  # 3 rows x 6 columns: wider than tall
