"""Every name and argument an experiment uses, checked against its library before any
training: at the workflow's dry run, and again by each job that reads the file."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path

import albumentations as A
import torch

from builtup.config.experiment import Experiment, read_experiment
from builtup.core.errors import InputError, one_line
from builtup.train.augment import build_transform
from builtup.train.losses import LOSSES
from builtup.train.models import build_model, check_model_names

# What building a network or a transform from bad settings raises (the libraries' own checks)
BUILD_ERRORS = (TypeError, ValueError, KeyError, AssertionError, RuntimeError, AttributeError)


def load_experiment(path: str | Path, config: Mapping | None = None) -> Experiment:
    """:func:`read_experiment`, then every name checked: InputError on the first unknown."""
    return checked(read_experiment(path, config))


def checked(experiment: Experiment) -> Experiment:
    """The experiment, once its names build: InputError naming its file otherwise."""
    try:
        check_names(experiment)
    except BUILD_ERRORS as err:
        raise InputError(experiment.path, one_line(err)) from None
    return experiment


def check_names(experiment: Experiment) -> None:
    check_model_names(experiment.model)
    check_network_builds(experiment)
    for term in experiment.loss:
        if term.name not in LOSSES:
            raise ValueError(f"unknown loss {term.name!r}")
    for transform in experiment.augmentation:
        check_transform(transform)


def check_network_builds(experiment: Experiment) -> None:
    """The network built from the settings on the meta device (no memory, no weights), so
    that the libraries' own checks of its options run."""
    settings = dataclasses.replace(experiment.model, encoder_weights=None)
    try:
        with torch.device("meta"):
            build_model(settings, experiment.channels, None, experiment.fused)
    except BUILD_ERRORS as err:
        raise ValueError(f"model: {one_line(err)}") from None


def check_transform(transform: Mapping) -> None:
    """A transform of albumentations, its inner ones first, built from its arguments; an
    argument it does not take (albumentations only warns) is refused."""
    name = transform["name"]
    cls = getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, (A.BasicTransform, A.BaseCompose))):
        raise ValueError(f"unknown augmentation {name!r} (albumentations has no such transform)")
    if issubclass(cls, A.BaseCompose) and "transforms" not in transform:
        raise ValueError(f"augmentation {name} needs a list of transforms")
    for inner in transform.get("transforms", []):
        check_transform(inner)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"Argument\(s\) .* are not valid")
        try:
            build_transform(dict(transform))
        except (*BUILD_ERRORS, UserWarning) as err:
            raise ValueError(f"augmentation {name}: {one_line(err)}") from None
