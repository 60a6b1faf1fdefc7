"""`unified.resume_from`: the weights come back at full precision, and a model that does not fit the run is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from classemo.checkpoint import save_model_checkpoint
from classemo.data.format import read_manifest
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.predictor import Predictor
from classemo.training.resume import ResumeError, load_resume_state

TINY = dict(image_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2, num_clusters=4, temporal_depth=1,
            temporal_heads=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7, **TINY)
    with torch.no_grad():  # values that bf16 cannot hold: rounding would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    directory = save_model_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "model", labels=LabelSet.paper())
    return Path(directory), {k: v.clone() for k, v in model.state_dict().items()}


def test_weights_load_at_float32_even_where_auto_would_pick_bf16(trained, tiny_dataset: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A bf16-capable machine, simulated: every precision but an explicit float32 becomes bfloat16, as "auto" does
    on a bf16 GPU or a CPU where bf16 wins the timing."""
    directory, weights = trained
    load = Predictor.from_checkpoint.__func__  # type: ignore[attr-defined]
    asked = []

    def bf16_machine(cls, source, **kwargs):  # noqa: ANN001, ANN202
        asked.append(kwargs.get("dtype", "auto"))
        if kwargs.get("dtype", "auto") != "float32":
            kwargs["dtype"] = torch.bfloat16
        return load(cls, source, **kwargs)

    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(bf16_machine))
    rounded = Predictor.from_checkpoint(directory, device="cpu")
    assert any(not torch.equal(v.float(), weights[k]) for k, v in rounded.model.state_dict().items()
               if v.is_floating_point()), "the simulated machine should round the weights"

    state = load_resume_state(str(directory), manifest=read_manifest(tiny_dataset), model_name="classemo_tiny",
                              data_root=str(tiny_dataset))
    assert asked[-1] == "float32"
    assert state.keys() == weights.keys()
    for k, v in state.items():
        assert v.dtype == weights[k].dtype and torch.equal(v, weights[k]), k


def test_a_model_that_does_not_fit_is_refused(trained, tiny_dataset: Path, tmp_path: Path) -> None:
    directory, _ = trained
    manifest = read_manifest(tiny_dataset)
    with pytest.raises(ResumeError, match="is a 'classemo_tiny', the config asks for 'classemo_small'"):
        load_resume_state(str(directory), manifest=manifest, model_name="classemo_small", data_root="d")
    with pytest.raises(ResumeError, match="cannot resume from"):
        load_resume_state(str(tmp_path / "nothing"), manifest=manifest, model_name="classemo_tiny", data_root="d")
    other = save_model_checkpoint(create_model("classemo_tiny", num_classes=3, **TINY), tmp_path / "other",
                                  labels=LabelSet(("happy", "sad", "neutral")))
    with pytest.raises(ResumeError, match=r"was trained on labels \['happy', 'sad', 'neutral'\]"):
        load_resume_state(str(other), manifest=manifest, model_name="classemo_tiny", data_root="d")


def test_the_run_must_repeat_what_the_checkpoint_was_built_with(tiny_dataset: Path, tmp_path: Path) -> None:
    """A grey-reading checkpoint resumed into a colour-reading model would run its weights on other inputs."""
    manifest = read_manifest(tiny_dataset)
    labels = manifest.label_set
    grey = save_model_checkpoint(create_model("classemo_tiny", num_classes=len(labels.names), grayscale=True, **TINY),
                                 tmp_path / "grey", labels=labels)
    asked = {k: v for k, v in TINY.items() if k not in ("image_size", "num_frames")}
    with pytest.raises(ResumeError, match=r"add unified.model_kwargs.grayscale=True"):
        load_resume_state(str(grey), manifest=manifest, model_name="classemo_tiny", data_root="d", model_kwargs=asked)
    state = load_resume_state(str(grey), manifest=manifest, model_name="classemo_tiny", data_root="d",
                              model_kwargs={**asked, "grayscale": True})
    assert state
