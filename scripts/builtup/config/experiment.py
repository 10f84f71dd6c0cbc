"""Experiments: one YAML file each, read once into a typed, frozen :class:`Experiment`.

:func:`read_experiment` validates the file against the schema (which holds every default)
and merges the workflow's fallbacks once: an experiment's ``prediction.window`` /
``prediction.overlap`` and ``delivery.aggregation`` / ``delivery.threshold`` left null take
the config's ``prediction`` and ``delivery`` sections (the schema's defaults of those
sections where no config is given). Every stage takes the resulting object; checkpoints
keep its plain data (:meth:`Experiment.to_dict`). The names an experiment uses (network,
losses, augmentations) are checked against their libraries by
:func:`builtup.train.names.check_names`, before any training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builtup.config.schema import check_against_schema, section_defaults
from builtup.config.workflow import check_less
from builtup.config.yamlfile import read_yaml
from builtup.core.errors import InputError
from builtup.core.recipes import get_recipe


@dataclass(frozen=True)
class ModelSettings:
    """The network: ``architecture`` (lwrefinenet or an smp class), ``encoder`` (a timm or
    smp name), ``encoder_weights`` (null, imagenet or a file), extra keyword ``options``."""

    architecture: str
    encoder: str
    encoder_weights: str | None
    classes: int
    options: Mapping[str, Any]


@dataclass(frozen=True)
class LossTerm:
    """One weighted term of the loss; ``options`` are the loss's own keyword arguments."""

    name: str
    weight: float
    options: Mapping[str, Any]

    @classmethod
    def from_dict(cls, term: Mapping) -> LossTerm:
        options = {k: v for k, v in term.items() if k not in ("name", "weight")}
        return cls(term["name"], term["weight"], options)

    def to_dict(self) -> dict:
        return {"name": self.name, "weight": self.weight, **self.options}


@dataclass(frozen=True)
class OptimizerSettings:
    name: str
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float


@dataclass(frozen=True)
class ScheduleSettings:
    """The learning-rate schedule; each name reads the fields it needs."""

    name: str
    power: float
    restart_every: int
    restart_at: float | None
    restart_factor: float
    patience: int
    factor: float


@dataclass(frozen=True)
class SamplerSettings:
    """Training draws: tiles (or scene windows) with / without built-up pixels, weighted;
    of a stack, a random subset of at least ``min_acquisitions`` acquisitions each."""

    with_target: float
    without_target: float
    samples_per_epoch: int | None
    source: str
    window: int
    min_acquisitions: int | None


@dataclass(frozen=True)
class LoggingSettings:
    tensorboard: bool
    mlflow: bool
    val_samples: int


@dataclass(frozen=True)
class PredictionSettings:
    """How a scene is predicted: ``stitch`` blend (windows of ``window`` px overlapping by at
    least ``overlap``) or crop (the central ``kept`` px of context windows of ``window`` px),
    ``batch_size`` windows at a time on ``device``, autocast to ``precision`` on CUDA; a test
    city by ``fold_models`` (``all``, or the one fold named)."""

    stitch: str
    window: int
    overlap: int
    kept: int | None
    precision: str
    fold_models: str
    batch_size: int
    device: str


@dataclass(frozen=True)
class DeliverySettings:
    """How a city map is made and cut: ``aggregation`` of its acquisitions, ``threshold``
    (a probability or ``oof``), and the share of acquisitions a ``vote`` needs."""

    aggregation: str
    threshold: float | str
    vote_threshold: float


@dataclass(frozen=True)
class Experiment:
    """One experiment as the workflow runs it: every value set, the config's merged in."""

    name: str
    path: str
    description: str
    model: ModelSettings
    recipe: str
    loss: tuple[LossTerm, ...]
    optimizer: OptimizerSettings
    schedule: ScheduleSettings
    epochs: int
    validate_every: int
    batch_size: int
    accumulate: int
    gradient_clip: float | None
    precision: str
    channels_last: bool
    compile: bool
    accelerator: str
    devices: int
    strategy: str
    sampler: SamplerSettings
    augmentation: tuple[Mapping[str, Any], ...]
    start_from: str | None
    checkpoint: str
    models_of: str | None
    tta: str
    prediction: PredictionSettings
    delivery: DeliverySettings
    logging: LoggingSettings
    seed: int

    @property
    def kind(self) -> str:
        """What the experiment reads: each acquisition (scene) or the city's stack."""
        return get_recipe(self.recipe).kind

    @property
    def channels(self) -> int:
        """Input channels of the network (of each acquisition, when it fuses them)."""
        return get_recipe(self.recipe).channels

    @property
    def models(self) -> str:
        """The experiment whose trained models this one predicts with (itself by default)."""
        return self.models_of or self.name

    @property
    def fused(self) -> bool:
        """Whether the network fuses a stack's acquisitions itself (a series recipe)."""
        return get_recipe(self.recipe).series

    def to_dict(self) -> dict:
        """Plain data (for checkpoints and logs); :meth:`from_dict` reads it back."""
        data = dataclasses.asdict(self)
        data["loss"] = [term.to_dict() for term in self.loss]
        data["augmentation"] = list(self.augmentation)
        return data

    def training_settings(self) -> dict:
        """The plain data that decides the trained weights (not how they are validated or
        used later)."""
        data = self.to_dict()
        used_later = ("name", "path", "description", "models_of", "tta", "prediction", "delivery")
        for key in ("validate_every", *used_later):
            data.pop(key)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> Experiment:
        return cls(
            **{
                **data,
                "model": ModelSettings(**data["model"]),
                "loss": tuple(LossTerm.from_dict(t) for t in data["loss"]),
                "optimizer": OptimizerSettings(**data["optimizer"]),
                "schedule": ScheduleSettings(**data["schedule"]),
                "sampler": SamplerSettings(**data["sampler"]),
                "augmentation": tuple(data["augmentation"]),
                "prediction": PredictionSettings(**data["prediction"]),
                "delivery": DeliverySettings(**data["delivery"]),
                "logging": LoggingSettings(**data["logging"]),
            }
        )


def read_experiment(path: str | Path, config: Mapping | None = None) -> Experiment:
    """The experiment at ``path``, its null prediction and delivery values taken from
    ``config`` (the workflow's, or its schema defaults); InputError on a schema violation."""
    path = Path(path)
    spec = _read_spec(path)
    if spec.get("models_of") is not None:
        spec = delivery_variant(spec, path)
    check_against_schema(spec, "experiment.schema.yaml", path)
    check_stitching(spec["prediction"], path)
    check_start(spec, path)
    spec["prediction"] = resolved_prediction(spec["prediction"], _section(config, "prediction"))
    if spec["prediction"]["stitch"] == "blend":
        check_less(spec["prediction"], "overlap", "window", "prediction", path)
    spec["delivery"] = resolved_delivery(spec["delivery"], _section(config, "delivery"))
    spec["augmentation"] = spec["augmentation"]["train"]
    return Experiment.from_dict({**spec, "name": path.stem, "path": str(path)})


def _read_spec(path: Path) -> dict:
    spec = read_yaml(path, "experiment file")
    if not isinstance(spec, dict):
        raise InputError(path, "an experiment is a mapping of settings")
    return spec


# What a file that predicts with another experiment's models (``models_of``) may set
VARIANT_KEYS = ("description", "models_of", "tta", "prediction", "delivery")


def delivery_variant(spec: Mapping, path: Path) -> dict:
    """The settings of a file that predicts and delivers with the models of another
    experiment (``models_of``, in the same folder): that experiment's, with this file's
    ``tta`` and its ``prediction`` and ``delivery`` values laid over the other's."""
    name = spec["models_of"]
    extra = sorted(set(spec) - set(VARIANT_KEYS))
    if extra:
        raise InputError(
            path,
            f"models_of {name}: the models' settings are {name}'s; this file sets only "
            f"{', '.join(VARIANT_KEYS)}, not {', '.join(extra)}",
        )
    if name == path.stem:
        raise InputError(path, "models_of names the experiment itself")
    base = _read_spec(path.with_name(f"{name}.yaml"))
    if base.get("models_of") is not None:
        raise InputError(path, f"models_of {name}, which predicts with the models of another")
    merged = {**base, **spec}
    for section in ("prediction", "delivery"):
        merged[section] = {**base.get(section, {}), **spec.get(section, {})}
    return merged


def _section(config: Mapping | None, key: str) -> Mapping:
    if config is None:
        return section_defaults("config.schema.yaml", key)
    return config[key]


def resolved_prediction(own: Mapping, workflow: Mapping) -> dict:
    """The experiment's stitching, its null window and overlap the workflow's."""
    return {
        **own,
        "window": workflow["window"] if own["window"] is None else own["window"],
        "overlap": workflow["overlap"] if own["overlap"] is None else own["overlap"],
        "batch_size": workflow["batch_size"],
        "device": workflow["device"],
    }


def resolved_delivery(own: Mapping, workflow: Mapping) -> dict:
    """The experiment's aggregation and threshold, else the workflow's."""
    return {
        "aggregation": own["aggregation"] or workflow["aggregation"],
        "threshold": workflow["threshold"] if own["threshold"] is None else own["threshold"],
        "vote_threshold": workflow["vote_threshold"],
    }


def workflow_delivery(config: Mapping) -> DeliverySettings:
    """The delivery of what has no experiment file of its own (an ensemble)."""
    own = {"aggregation": None, "threshold": None}
    return DeliverySettings(**resolved_delivery(own, config["delivery"]))


def check_start(spec: Mapping, path: Path) -> None:
    """An experiment started from another's models takes every weight from them."""
    start = spec["start_from"]
    if start is None:
        return
    if start == path.stem:
        raise InputError(path, "start_from names the experiment itself")
    if spec["model"]["encoder_weights"] is not None:
        raise InputError(
            path,
            f"start_from {start} gives every starting weight: set model.encoder_weights to null",
        )


def check_same_network(experiment: Experiment, start: Experiment) -> None:
    """The network an experiment starts from must be the one it trains (same weights' shapes)."""

    def network(e: Experiment) -> tuple:
        m = e.model
        return m.architecture, m.encoder, m.classes, dict(m.options), e.channels, e.fused

    if network(experiment) != network(start):
        raise InputError(
            experiment.path,
            f"start_from {start.name} builds another network (architecture, encoder, options "
            "or input channels differ): its models cannot start this one",
        )


def check_no_start_cycle(experiments: Mapping[str, Experiment]) -> None:
    """No chain of ``start_from`` comes back to where it began."""
    for name, experiment in experiments.items():
        seen, current = [name], experiment.start_from
        while current is not None:
            if current in seen:
                chain = " -> ".join([*seen, current])
                raise InputError(experiment.path, f"start_from goes round in a circle: {chain}")
            seen.append(current)
            current = experiments[current].start_from


def check_stitching(prediction: Mapping, path) -> None:
    """Crop stitching needs a context window and a centre that fits it symmetrically."""
    if prediction["stitch"] != "crop":
        return
    window, kept = prediction["window"], prediction["kept"]
    if window is None or kept is None or kept > window or (window - kept) % 2:
        raise InputError(
            path,
            "prediction: stitch crop needs window (the context, px) and kept (its centre, px), "
            f"kept at most window and window - kept even; got window {window}, kept {kept}",
        )
