"""Experiments: one YAML file each, validated by the schema, names checked before training.

:func:`read_experiment` is light (YAML and schema only: the workflow calls it
at parse time); :func:`load_experiment` also checks every name against the
model, loss, recipe and augmentation libraries.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from builtup.config.schema import check_against_schema
from builtup.core.errors import InputError
from builtup.core.recipes import get_recipe


def read_experiment(path: str | Path) -> dict:
    """The experiment at ``path`` with defaults filled in; InputError on a schema violation."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "experiment file does not exist")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML: {err}") from None
    check_against_schema(spec, "experiment.schema.yaml", path)
    check_stitching(spec["prediction"], path)
    spec["name"] = path.stem
    spec["path"] = str(path)
    return spec


def check_stitching(prediction: dict, path) -> None:
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


def load_experiment(path: str | Path) -> dict:
    """:func:`read_experiment`, then every name checked: InputError before any training."""
    spec = read_experiment(path)
    try:
        check_names(spec)
    except (ValueError, KeyError) as err:
        raise InputError(path, str(err).strip("'\"")) from None
    return spec


def check_names(spec: dict) -> None:
    from builtup.train.losses import LOSSES
    from builtup.train.models import check_model_names

    check_model_names(spec["model"])
    get_recipe(spec["recipe"])
    for term in spec["loss"]:
        if term["name"] not in LOSSES:
            raise ValueError(f"unknown loss {term['name']!r}")
    for transform in spec["augmentation"]["train"]:
        check_transform(transform)


def check_transform(transform: dict) -> None:
    import albumentations as A

    if not hasattr(A, transform["name"]):
        raise ValueError(f"unknown augmentation {transform['name']!r} (albumentations has none)")
    for inner in transform.get("transforms", []):
        check_transform(inner)


def input_channels(spec: dict) -> int:
    return get_recipe(spec["recipe"]).channels
