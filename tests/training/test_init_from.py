"""`unified.init_from`: a fine-tuning start. The same labels load every weight; other labels every weight but the
class heads, which stay fresh; any other misfit is refused, and so is init_from with resume_from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from classemo.checkpoint import save_model_checkpoint
from classemo.config import ConfigError, load_config
from classemo.data.format import read_manifest
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.training.resume import ResumeError, class_head_keys, init_summary, load_init_state

TINY = dict(embed_dim=32, depth=1, num_heads=2, num_clusters=4, temporal_depth=1, temporal_heads=2)
SHAPE = dict(image_size=32, num_frames=4)
HEADS = {f"{m}.{p}" for m in ("backbone.head", "head", "peak_head", "vlad_head") for p in ("weight", "bias")}


def _trained(directory: Path, labels: LabelSet, **kwargs) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    model = create_model("classemo_tiny", num_classes=len(labels), **SHAPE, **{**TINY, **kwargs})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    path = save_model_checkpoint(model, directory, labels=labels)
    return Path(path), {k: v.clone() for k, v in model.state_dict().items()}


def _load(source: Path | str, root: Path, kwargs: dict | None = None, **shape):
    return load_init_state(str(source), manifest=read_manifest(root), model_name="classemo_tiny",
                           data_root=str(root), model_kwargs=TINY if kwargs is None else kwargs, **(shape or SHAPE))


def test_the_same_labels_load_every_weight(tiny_dataset: Path, tmp_path: Path) -> None:
    ckpt, weights = _trained(tmp_path / "m", read_manifest(tiny_dataset).label_set)
    state, reinit = _load(ckpt, tiny_dataset)
    assert reinit == [] and state.keys() == weights.keys()
    for k, v in state.items():
        assert v.dtype == weights[k].dtype and torch.equal(v, weights[k]), k
    assert "every weight loaded" in init_summary(str(ckpt), reinit)


def test_other_labels_keep_fresh_heads_and_load_the_rest(tiny_dataset: Path, tmp_path: Path) -> None:
    """A 3-label checkpoint into the 7-label dataset: the heads have the run's shape and its fresh values."""
    ckpt, weights = _trained(tmp_path / "m", LabelSet(("happy", "sad", "neutral")))
    state, reinit = _load(ckpt, tiny_dataset)
    assert set(reinit) == HEADS == class_head_keys("classemo_tiny", 7, **SHAPE, **TINY)
    torch.manual_seed(0)  # the loader's seed (run.seed): the fresh heads are the run's model's own
    fresh = create_model("classemo_tiny", num_classes=7, **SHAPE, **TINY).state_dict()
    assert state.keys() == fresh.keys()
    for k, v in state.items():
        if k in HEADS:
            assert v.shape != weights[k].shape and v.shape == fresh[k].shape and torch.equal(v, fresh[k]), k
        else:
            assert torch.equal(v, weights[k]), k
    create_model("classemo_tiny", num_classes=7, **SHAPE, **TINY).load_state_dict(state)  # strict=True fits
    line = init_summary(str(ckpt), reinit)
    assert "\n" not in line and "re-initialised" in line and "vlad_head.weight" in line


def test_the_same_labels_in_another_order_reinitialise_the_heads(tiny_dataset: Path, tmp_path: Path) -> None:
    names = read_manifest(tiny_dataset).label_set.names
    ckpt, weights = _trained(tmp_path / "m", LabelSet(tuple(reversed(names))))
    state, reinit = _load(ckpt, tiny_dataset)
    assert set(reinit) == HEADS
    assert all(not torch.equal(state[k], weights[k]) for k in HEADS)
    assert all(torch.equal(v, weights[k]) for k, v in state.items() if k not in HEADS)


def test_another_embed_dim_is_refused_naming_a_key(tiny_dataset: Path, tmp_path: Path) -> None:
    """The shape check itself (model_kwargs=None skips the shared kwargs check, which would name embed_dim first),
    and a misfit the kwargs check leaves to the run (another data.image_size)."""
    ckpt, _ = _trained(tmp_path / "m", LabelSet(("happy", "sad", "neutral")), embed_dim=48)
    with pytest.raises(ResumeError, match=r"does not fit the run's 'classemo_tiny': it has no 'backbone[\w.]+'"):
        load_init_state(str(ckpt), manifest=read_manifest(tiny_dataset), model_name="classemo_tiny",
                        data_root="d", model_kwargs=None, **SHAPE)
    wide = save_model_checkpoint(create_model("classemo_tiny", num_classes=3, embed_dim=64, **SHAPE), tmp_path / "w",
                                 labels=LabelSet(("happy", "sad", "neutral")))  # the preset but embed_dim
    with pytest.raises(ResumeError, match=r"does not fit the run's 'classemo_tiny': '[\w.]+' is \([\d, ]*64"):
        load_init_state(str(wide), manifest=read_manifest(tiny_dataset), model_name="classemo_tiny",
                        data_root="d", model_kwargs=None, **SHAPE)
    with pytest.raises(ResumeError, match="add unified.model_kwargs.embed_dim=48"):  # the shared kwargs check
        _load(ckpt, tiny_dataset)
    same, _ = _trained(tmp_path / "s", LabelSet(("happy", "sad", "neutral")))
    with pytest.raises(ResumeError, match=r"'[\w.]*pos_embed' is \(1, 17, 32\) there, \(1, 37, 32\) here"):
        _load(same, tiny_dataset, image_size=48, num_frames=4)
    with pytest.raises(ResumeError, match="unified.init_from model is a 'classemo_tiny', the config asks for"):
        load_init_state(str(ckpt), manifest=read_manifest(tiny_dataset), model_name="classemo_small",
                        data_root="d", **SHAPE)
    with pytest.raises(ResumeError, match="cannot start from"):
        _load(tmp_path / "nothing", tiny_dataset)


def test_init_from_with_resume_from_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unified.init_from and unified.resume_from are both set") as e:
        load_config(None, ["unified.init_from=builtin", "unified.resume_from=/some/ckpt"])
    assert "\n" not in str(e.value)
    assert load_config(None, ["unified.init_from=builtin"]).unified.init_from == "builtin"


def test_builtin_loads_for_a_dataset_of_its_labels(tiny_dataset: Path) -> None:
    """The synthetic data set has the built-in model's labels; the run repeats its grayscale and input shape."""
    from classemo.predictor import Predictor

    builtin = Predictor.from_checkpoint("builtin", device="cpu", dtype="float32")
    assert list(builtin.labels) == list(read_manifest(tiny_dataset).label_set.names)
    shape = dict(image_size=builtin.preprocessing.image_size, num_frames=builtin.num_frames)
    with pytest.raises(ResumeError, match="add unified.model_kwargs.grayscale=True"):
        _load("builtin", tiny_dataset, kwargs={}, **shape)
    state, reinit = _load("builtin", tiny_dataset, kwargs={"grayscale": True}, **shape)
    assert reinit == []
    for k, v in builtin.model.state_dict().items():
        assert torch.equal(state[k], v.float() if v.is_floating_point() else v), k


def test_resolve_paths_makes_a_local_init_from_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.paths import resolve_paths

    monkeypatch.chdir(tmp_path)
    for given, want in (("ckpt/model", str(tmp_path / "ckpt" / "model")), ("builtin", "builtin"),
                        ("models:/classemo@champion", "models:/classemo@champion")):
        cfg = load_config(None, [f"unified.init_from={given}", f"run.tracking_uri=sqlite:///{tmp_path}/m.db"])
        assert resolve_paths(cfg).unified.init_from == want
