"""Every name an experiment uses, checked against its library before any training."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import albumentations as A

from builtup.config.experiment import Experiment, read_experiment
from builtup.core.errors import InputError
from builtup.train.losses import LOSSES
from builtup.train.models import check_model_names


def load_experiment(path: str | Path, config: Mapping | None = None) -> Experiment:
    """:func:`read_experiment`, then every name checked: InputError on the first unknown."""
    experiment = read_experiment(path, config)
    try:
        check_names(experiment)
    except (ValueError, KeyError) as err:
        raise InputError(path, str(err).strip("'\"")) from None
    return experiment


def check_names(experiment: Experiment) -> None:
    check_model_names(experiment.model)
    for term in experiment.loss:
        if term.name not in LOSSES:
            raise ValueError(f"unknown loss {term.name!r}")
    for transform in experiment.augmentation:
        check_transform(transform)


def check_transform(transform: Mapping) -> None:
    if not hasattr(A, transform["name"]):
        raise ValueError(f"unknown augmentation {transform['name']!r} (albumentations has none)")
    for inner in transform.get("transforms", []):
        check_transform(inner)
