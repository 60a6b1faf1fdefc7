"""Typed configuration of the training job: dataclass defaults, a YAML file, then `key.path=value` overrides.

The resolved config (`to_dict`) is what gets logged as MLflow params and saved beside every run and checkpoint.
Nothing here imports Ray: `jobs/train.py` unpacks these into Ray's own config objects.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml


class ConfigError(ValueError):
    """A config file or override that names an unknown key or holds a value of the wrong type."""


@dataclass
class DataConfig:
    """Where the dataset is and how clips become batches."""

    root: str = "data/sample"  # local path or s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL)
    synth_if_missing: bool = True  # generate the synthetic sample dataset at `root` when it does not exist
    # The generated sample is sized so that the default run learns on 2 CPU cores in minutes (docs/training.md):
    # many people with few clips each, because generalising across people is what the split tests.
    synth_clips_per_class: int = 60  # sample dataset size, when generated
    synth_num_frames: int = 4  # frames per synthetic clip
    synth_image_size: int = 48  # side of the synthetic face crops
    synth_subjects: int = 60  # distinct synthetic people; train/val/test never share one
    synth_seed: int = 0
    num_frames: int = 4  # frames per clip the model sees (longer clips are subsampled, shorter padded)
    image_size: int = 48  # model input side; frames are resized to it
    batch_size: int = 16  # per worker; 8 stalls training (BatchNorm on 8 faces; docs/benchmarks-training.md)
    augment: bool = True  # ClipAugment on training clips
    # ClassroomAugment after ClipAugment on training clips: small, blurred, JPEG, downcast and occluded faces
    classroom_augment: bool = False
    map_batch_size: int = 32  # rows per Ray Data map_batches call (decode + augment)
    # Decode once: keep the decoded frames (uint8, at image_size) in Ray's object store and only augment per epoch.
    # auto: when a split's frames fit in a quarter of the object store; on; off (decode every epoch, streaming).
    cache: str = "auto"
    prefetch_batches: int = 2  # batches Ray Data prepares ahead of the training loop
    limit_train: int = 0  # use at most this many training clips (0: all); for quick runs and benchmarks


@dataclass
class StarGANConfig:
    """Stage 1: StarGAN on peak frames (classemo.training.stargan)."""

    enabled: bool = True  # False skips the stage (then `checkpoint`, if set, still feeds M_H)
    checkpoint: str = ""  # start from this generator checkpoint dir (or use it as is when enabled=False)
    model: str = "stargan_tiny"  # registry name of the StarGAN preset
    epochs: int = 2
    lr: float = 1e-4
    batch_size: int = 16  # per worker
    n_critic: int = 5  # discriminator steps per generator step
    lambda_cls: float = 1.0  # domain-classification loss weight
    lambda_rec: float = 10.0  # cycle-reconstruction loss weight
    lambda_gp: float = 10.0  # gradient-penalty weight
    # Quality gate: stage 2 uses the generator for M_H only if D recognises the target expression in at least this
    # fraction of its validation translations (chance is 1 / num_labels). A generator below it would feed M_H
    # faces labelled with expressions they do not show.
    min_domain_acc: float = 0.5


@dataclass
class UnifiedConfig:
    """Stage 2: the unified spatio-temporal model (classemo.training.unified)."""

    enabled: bool = True
    model: str = "classemo_tiny"  # registry name
    model_kwargs: dict = field(default_factory=dict)  # extra create_model kwargs (use_netvlad, ...)
    resume_from: str = ""  # start from this checkpoint dir or models:/ URI; its labels must match the dataset
    # Fine-tune from "builtin", a checkpoint dir or a models:/ / runs:/ URI: epoch 0, a fresh optimiser; on other
    # labels every weight loads but the class heads, which start fresh (docs/training.md). Not with resume_from.
    init_from: str = ""
    epochs: int = 30  # the demo sample reaches test accuracy ~0.8 by then (docs/training.md); 16 stopped at ~0.5
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    eta1: float = 0.5  # weight of M_B (ViT head CE)
    eta2: float = 0.5  # weight of M_Y (NetVLAD head CE)
    lambda_t: float = 1.0  # weight of the temporal CE
    lambda_va: float = 0.5  # weight of the valence/arousal loss
    va_loss: str = "mse"  # "mse" or "ccc"
    label_smoothing: float = 0.0
    # Train every CE term on the dataset's soft labels (the annotators' vote distribution, `soft_label`), where a
    # clip has one; the others keep their one-hot label. FER+'s paper found it better than the majority label.
    soft_labels: bool = False
    balance_classes: bool = True  # CE class weights from the training label counts
    class_weight_power: float = 1.0  # weights ∝ 1 / count^power: 1 balanced, 0.5 milder for mostly-neutral footage
    stargan_per_clip: int = 1  # generated peak frames per clip for M_H (0: real peak frames only)
    stargan_real_ratio: float = 0.5  # fraction of real frames in the M_H batch
    grad_clip: float = 1.0


@dataclass
class ScalingConfig:
    """How many Ray Train workers and what each one gets."""

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 0.5  # fractional, so Ray Data keeps CPUs for decoding on small machines
    gpus_per_worker: float = 1.0  # only when use_gpu
    bf16: bool = True  # autocast to bfloat16 on GPU (ignored on CPU)


@dataclass
class RunConfig:
    """Ray cluster, storage, fault tolerance and MLflow."""

    name: str = "classemo-train"  # Ray Train run name prefix and MLflow parent run name
    experiment: str = "classemo"  # MLflow experiment
    storage_path: str = "runs"  # Ray Train storage (local dir made absolute on the driver, or s3://)
    tracking_uri: str = ""  # MLflow tracking URI; empty: classemo.tracking.tracking_uri() resolved on the driver
    system_metrics: bool = True  # CPU, memory, disk and (with a GPU) GPU curves of the job's parent run, in MLflow
    system_metrics_interval_s: float = 10.0  # seconds between two samples of those curves
    register: bool = True  # register the model as `classemo` and maybe move `champion`
    registered_name: str = "classemo"
    export_model: str = ""  # also copy the best unified checkpoint (config.json + model.pt) to this directory
    max_failures: int = 1  # worker-group restarts, each resuming from the latest checkpoint
    num_to_keep: int = 2  # checkpoints kept, best by `checkpoint_metric`
    checkpoint_metric: str = "val_accuracy"
    ray_address: str = ""  # empty: join RAY_ADDRESS / the job's cluster, else start a local Ray
    ray_num_cpus: int = 0  # logical CPUs of a locally started Ray (0: 2x the machine's cores, min 4)
    seed: int = 0
    fail_at_epoch: int = -1  # tests only: rank 1 raises once in the middle of this epoch
    fail_marker: str = ""  # tests only: the file that records that the injected failure already happened


@dataclass
class JobConfig:
    """The whole training job: data, both stages, scaling and run settings."""

    data: DataConfig = field(default_factory=DataConfig)
    stargan: StarGANConfig = field(default_factory=StarGANConfig)
    unified: UnifiedConfig = field(default_factory=UnifiedConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """`{"unified.epochs": 6, ...}`: the MLflow params form."""
        return _flatten(self.to_dict())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobConfig":
        cfg = _build(cls, data, "")
        if cfg.unified.init_from and cfg.unified.resume_from:
            raise ConfigError("unified.init_from and unified.resume_from are both set: resume_from continues a model "
                              "on the same labels, init_from fine-tunes from one; set only one")
        return cfg


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and all(isinstance(x, str) for x in v) and k != "model_kwargs":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently convert) one value against a field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _build(tp, value, where + ".")
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {[prefix + u for u in unknown]}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`, section by section, as a new dict.

    `model_kwargs` is replaced whole rather than merged: it is the kwargs of one create_model call, so a file's
    `model_kwargs` means exactly those kwargs, not additions to the ones underneath.
    """
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "model_kwargs":
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """`data["unified"]["eta1"] = value` for the path `unified.eta1`, in place, creating missing sections.

    Unlike `merge` of a parsed override, this leaves the key's siblings alone even inside `model_kwargs`, so that a
    tuned kwarg (`unified.model_kwargs.use_netvlad`) keeps the preset's other kwargs.
    """
    keys = _path_keys(path)
    for k in keys[:-1]:
        data = data.setdefault(k, {})
    data[keys[-1]] = value


def _path_keys(path: str) -> list[str]:
    return [k for k in path.strip().split(".") if k]


def split_override(text: str) -> tuple[str, Any]:
    """`unified.epochs=3` -> `("unified.epochs", 3)`; the value is parsed as YAML (numbers, bools, lists).

    Raises:
        ConfigError: No `=`, an empty key, or a value that is not valid YAML.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    if not _path_keys(key):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: cannot parse the value: {e}") from None
    return key, value


def parse_override(text: str) -> dict[str, Any]:
    """`unified.epochs=3` -> `{"unified": {"epochs": 3}}`, ready to `merge` into a config dict."""
    out: dict[str, Any] = {}
    set_path(out, *split_override(text))
    return out


def apply_override(data: dict[str, Any], text: str) -> dict[str, Any]:
    """`data` with one `key.path=value` override applied, as a new dict.

    A section's mapping merges into the section (`merge`), but one key inside `model_kwargs`
    (`unified.model_kwargs.stem_depth=[1,2,2]`) is set beside the file's other kwargs: the command line adds a kwarg
    to the file's, while `unified.model_kwargs={...}` still replaces them whole.

    Raises:
        ConfigError: As `split_override`, or a path that runs through a value that is not a mapping.
    """
    key, value = split_override(text)
    if "model_kwargs" not in _path_keys(key)[:-1]:
        return merge(data, parse_override(text))
    out = copy.deepcopy(data)
    try:
        set_path(out, key, value)
    except (AttributeError, TypeError):
        raise ConfigError(f"override {text!r}: {key} runs through a value that is not a mapping") from None
    return out


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """The parsed file, an empty one as `{}`; `what` names the file in the errors (the tune command's differs).

    Raises:
        ConfigError: The file does not exist or is not valid YAML.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist")
    try:
        return yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {p} is not valid YAML: {e}") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                base: JobConfig | None = None) -> JobConfig:
    """Defaults (or `base`), then the YAML file, then `key.path=value` overrides, validated against the types.

    Args:
        path: Optional YAML file with any subset of the sections.
        overrides: `section.key=value` strings, applied last.
        base: Starting config instead of the dataclass defaults.

    Raises:
        ConfigError: Unknown keys, wrong types, or an unreadable file, with the offending key named.
    """
    data = (base or JobConfig()).to_dict()
    if path:
        loaded = read_yaml(path)
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {Path(path)} must hold a mapping of sections, got {type(loaded).__name__}")
        data = merge(data, loaded)
    for text in overrides:
        data = apply_override(data, text)
    return JobConfig.from_dict(data)
