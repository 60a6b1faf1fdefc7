"""Start the unified model from a trained one: `unified.resume_from` (the same labels, every weight) or
`unified.init_from` (a fine-tuning start: the same labels load every weight, other labels every weight but the class
heads). Both load the source and check it fits the run in one place, `load_start_state`, and differ only in the
label rule; both are weights-only: the run starts at epoch 0 with a fresh optimiser and schedule.

Plain PyTorch and MLflow, no Ray: the job's driver calls it once before any training starts (so a mismatch fails in
seconds) and again to ship the state dict to its workers.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from classemo.data.format import Manifest


class ResumeError(ValueError):
    """A resume source that cannot be loaded or does not fit the dataset or the configured model."""


# Model arguments the resume check leaves out: the job sets these from the dataset, and a pretrained start records
# its weights' mean and std, which a resumed run gets back from the same `pretrained` name.
RUN_SHAPE_KWARGS = frozenset({"num_classes", "num_frames", "image_size", "mean", "std"})

# The two label rules of `load_start_state`: the option each one serves, as its messages name it.
RESUME, INIT = "--resume-from", "unified.init_from"


def load_resume_state(source: str, *, manifest: Manifest, model_name: str, data_root: str,
                      model_kwargs: Mapping[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """`unified.resume_from`: the float32 state dict of a checkpoint trained on the dataset's labels.

    `load_start_state` with the resume rule; see it for the arguments.
    """
    state, _ = load_start_state(source, rule=RESUME, manifest=manifest, model_name=model_name, data_root=data_root,
                                model_kwargs=model_kwargs)
    return state


def load_init_state(source: str, *, manifest: Manifest, model_name: str, data_root: str, image_size: int,
                    num_frames: int, model_kwargs: Mapping[str, Any] | None = None,
                    seed: int = 0) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`unified.init_from`: the full state dict of the run's model, with the source's weights in it.

    `load_start_state` with the fine-tuning rule; see it for the arguments. Returns the state dict and the keys
    that kept their fresh initialisation (the class heads, when the labels differ; empty otherwise).
    """
    return load_start_state(source, rule=INIT, manifest=manifest, model_name=model_name, data_root=data_root,
                            model_kwargs=model_kwargs, image_size=image_size, num_frames=num_frames, seed=seed)


def load_start_state(source: str, *, rule: str, manifest: Manifest, model_name: str, data_root: str,
                     model_kwargs: Mapping[str, Any] | None = None, image_size: int | None = None,
                     num_frames: int | None = None, seed: int = 0) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The float32 state dict of a checkpoint dir or `models:/` URI, checked against the run.

    Weights load at float32 whatever the machine: `Predictor`'s "auto" precision could pick bf16 (on a bf16 GPU, or
    a CPU where bf16 wins the timing) and round them before training continues. A model whose face crops were made
    differently from the dataset's gets a warning, not an error: fine-tuning on other crops is legitimate.

    The label rule: `RESUME` refuses a source trained on other labels and returns its state dict as it is. `INIT`
    builds the run's model (`num_classes` = the dataset's labels, seeded with `seed`) and copies every weight of
    the source into it; on other labels (names, order or count) the class heads keep their fresh initialisation.
    The heads are found generically: the entries whose shape follows `num_classes` (`class_head_keys`). Any other
    difference (a missing or extra key, another shape) is an error naming the first such key.

    Args:
        source: Checkpoint directory, `"builtin"`, or `models:/` / `runs:/` URI.
        rule: `RESUME` or `INIT`.
        manifest: The training dataset's manifest (labels and face settings).
        model_name: The registry name the run's config asks for.
        data_root: The dataset root, named in messages.
        model_kwargs: The run's `unified.model_kwargs`; every argument the checkpoint was built with (such as
            `grayscale`) must be set to the same value, or the weights would run in a model they were not
            trained for.
        image_size, num_frames: The run's input shape (`INIT` only: the run's model is built with them).
        seed: Seed of the fresh class heads (`INIT` only).

    Returns:
        The state dict, and the keys that kept their fresh initialisation (always empty for `RESUME`).

    Raises:
        ResumeError: When the source cannot be loaded, was trained on other labels (`RESUME`), is another model,
            or (`INIT`) has a weight of another shape than the run's model outside the class heads.
    """
    from classemo.checkpoint import CheckpointError
    from classemo.faces import FaceSettings, warn_if_different
    from classemo.predictor import Predictor

    if rule not in (RESUME, INIT):
        raise ValueError(f"rule must be {RESUME!r} or {INIT!r}, got {rule!r}")
    labels = manifest.label_set
    try:
        predictor = Predictor.from_checkpoint(source, device="cpu", dtype="float32")
    except (CheckpointError, OSError, ValueError) as e:
        verb = "resume" if rule == RESUME else "start"
        raise ResumeError(f"cannot {verb} from {source}: {e}") from None
    same_labels = list(predictor.labels) == list(labels.names)
    if rule == RESUME and not same_labels:
        raise ResumeError(f"--resume-from model {source} was trained on labels {predictor.labels}, "
                          f"but the dataset {data_root} has {list(labels.names)}")
    name = predictor.config["model"]["name"]
    if name != model_name:
        raise ResumeError(f"{rule} model is a {name!r}, the config asks for {model_name!r}")
    if model_kwargs is not None:
        built = predictor.config["model"].get("kwargs", {})
        differ = {k: v for k, v in built.items() if k not in RUN_SHAPE_KWARGS and model_kwargs.get(k) != v}
        if differ:
            wanted = " ".join(f"unified.model_kwargs.{k}={v}" for k, v in differ.items())
            raise ResumeError(f"{rule} model {source} was built with {differ}, which this run's "
                              f"unified.model_kwargs does not repeat; add {wanted}")
    warn_if_different(FaceSettings.from_dict(manifest.face, size=manifest.image_size), predictor.face_settings,
                      f"{rule} {source} on {data_root}")
    state = _tensors(predictor.model.state_dict())
    if rule == RESUME:
        return state, []
    if image_size is None or num_frames is None:
        raise ValueError("unified.init_from needs the run's image_size and num_frames")
    build = dict(image_size=image_size, num_frames=num_frames, **(model_kwargs or {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        from classemo.models import create_model

        fresh = _tensors(create_model(model_name, num_classes=len(labels), **build).state_dict())
    heads = set() if same_labels else class_head_keys(model_name, len(labels), fresh, **build)
    missing = [k for k in fresh if k not in state]
    extra = [k for k in state if k not in fresh]
    if missing or extra:
        which = f"has no {missing[0]!r}" if missing else f"has {extra[0]!r}, which the run's model does not"
        raise ResumeError(f"unified.init_from model {source} does not fit the run's {model_name!r}: it {which} "
                          f"(another architecture? compare unified.model_kwargs with the checkpoint's)")
    for k, v in fresh.items():
        if k not in heads and state[k].shape != v.shape:
            raise ResumeError(f"unified.init_from model {source} does not fit the run's {model_name!r}: {k!r} is "
                              f"{tuple(state[k].shape)} there, {tuple(v.shape)} here (another architecture, "
                              f"embed_dim or input size? unified.model_kwargs and data.image_size / num_frames "
                              f"must be the checkpoint's)")
    reinit = [k for k in fresh if k in heads]
    return {k: (v if k in heads else state[k].to(v.dtype)) for k, v in fresh.items()}, reinit


def class_head_keys(model_name: str, num_classes: int, state: Mapping[str, torch.Tensor] | None = None,
                    **kwargs: Any) -> set[str]:
    """The state-dict keys of the model's class heads: those whose shape changes with `num_classes`.

    Found by building the model again with one class more (on the meta device: no memory, no initialisation
    cost) and comparing shapes with `state` (the model at `num_classes`; built the same way when None).
    """
    from classemo.models import create_model

    def shapes(n: int) -> dict[str, torch.Size]:
        with torch.device("meta"):
            return {k: v.shape for k, v in create_model(model_name, num_classes=n, **kwargs).state_dict().items()}

    here = {k: v.shape for k, v in state.items()} if state is not None else shapes(num_classes)
    other = shapes(num_classes + 1)
    return {k for k, s in here.items() if other.get(k) != s}


def init_summary(source: str, reinitialised: list[str]) -> str:
    """The one line the job prints for an `unified.init_from` start."""
    if not reinitialised:
        return f"[classemo] unified.init_from {source}: every weight loaded (the same labels), fresh optimiser, epoch 0"
    return (f"[classemo] unified.init_from {source}: other labels, so the class heads are re-initialised "
            f"({', '.join(reinitialised)}); every other weight loaded, fresh optimiser, epoch 0")


def _tensors(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
