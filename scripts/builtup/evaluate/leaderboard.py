"""One table that ranks every delivered experiment and ensemble against the baselines, and
one of F1 per city beside each city's number of acquisitions.

Models are scored out of fold on the training cities (each city predicted by the model that
never saw it, at the threshold of the other training cities) and on the labelled test cities
(at the threshold of all training cities); the baselines' training-city scores are likewise
those of the rule tuned on the other training cities. Nothing a figure scores was tuned on.
All against the evaluation masks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from builtup.core.bands import SCENE, STACK
from builtup.core.rasters import atomic_path
from builtup.core.recipes import SERIES, get_recipe

if TYPE_CHECKING:  # the leaderboard job's env has no jsonschema: types only
    from builtup.config.experiment import DeliverySettings, Experiment

log = logging.getLogger(__name__)

SCORES = ("f1", "iou_1", "precision", "recall")
BASELINE_INPUTS = {"single_scene": SCENE, "multi_temporal": STACK}
SETTINGS = (
    "input",
    "architecture",
    "recipe",
    "sampling",
    "models",
    "stitching",
    "tta",
    "aggregation",
)
COLUMNS = [
    "name",
    "kind",
    *SETTINGS,
    "rule",
    "train_scored",
    *(f"train_{s}" for s in SCORES),
    *(f"test_{s}" for s in SCORES),
]


def experiment_settings(experiment: Experiment) -> dict:
    """What distinguishes an experiment in the table: the input it reads (a scene, a stack's
    statistics or a series of acquisitions), network and where its weights start, recipe,
    training samples, the models that predict a test city, window stitching, TTA and how a
    city's acquisitions make its map."""
    model, sampler, stitch = experiment.model, experiment.sampler, experiment.prediction
    weights = model.encoder_weights
    init = {None: "random", "imagenet": "ImageNet"}.get(weights, "weights file")
    if experiment.start_from:
        init = f"from {experiment.start_from}"
    folds = stitch.fold_models
    weighting = f"weights {sampler.with_target:g}/{sampler.without_target:g}"
    if stitch.stitch == "crop":
        stitching = f"crop {stitch.kept} of {stitch.window}"
    else:
        stitching = f"blend {stitch.window}/{stitch.overlap}"
    return {
        "input": get_recipe(experiment.recipe).family,
        "architecture": f"{model.architecture} {model.encoder} ({init})",
        "recipe": experiment.recipe,
        "sampling": (
            f"scene windows {sampler.window} px, {weighting}"
            if sampler.source == "scenes"
            else f"tiles, {weighting}"
        ),
        "models": f"{experiment.models}, " + ("all folds" if folds == "all" else f"fold {folds}"),
        "stitching": stitching,
        "tta": experiment.tta,
        "aggregation": AGGREGATIONS.get(
            get_recipe(experiment.recipe).family, experiment.delivery.aggregation
        ),
    }


# How a stack experiment turns a city's acquisitions into one map (a scene experiment: its
# delivery aggregation of the acquisitions' answers)
AGGREGATIONS = {STACK: "stack statistics", SERIES: "learned fusion"}


def ensemble_settings(members: dict[str, dict], delivery: DeliverySettings) -> dict:
    """An ensemble's settings: its members' (joined), averaged scene by scene."""
    joined = {key: " + ".join(dict.fromkeys(m[key] for m in members.values())) for key in SETTINGS}
    return {
        **joined,
        "architecture": "mean of " + " + ".join(members),
        "aggregation": delivery.aggregation,
    }


def city_f1(scores_by_city: dict[str, dict]) -> dict:
    """``f1 <city>`` columns from scores per city."""
    return {f"f1 {city}": scores["f1"] for city, scores in scores_by_city.items()}


def _scores(prefix: str, scores: dict | None) -> dict:
    scores = scores or {}
    return {f"{prefix}_{s}": scores.get(s, float("nan")) for s in SCORES}


def model_row(name: str, kind: str, settings: dict, summary: dict, cities: pd.DataFrame) -> dict:
    """The row of an experiment or ensemble from its settings (:func:`experiment_settings`),
    ``summary.json`` and ``cities.tsv``."""
    overall = summary["overall"]
    by_city = {row["city"]: row for row in cities.to_dict("records")}
    return {
        "name": name,
        "kind": kind,
        **settings,
        "rule": f"probability >= {summary['threshold']:.3f}",
        "train_scored": "out of fold, threshold of the other cities",
        **_scores("train", overall.get("train_out_of_fold")),
        **_scores("test", overall.get("test")),
        **city_f1(by_city),
    }


def baseline_rows(baselines: dict) -> list[dict]:
    return [
        {
            "name": f"baseline: {name.replace('_', '-')}",
            "kind": "baseline",
            "input": BASELINE_INPUTS[name],
            "architecture": "threshold",
            "rule": result["rule"],
            "train_scored": "rule of the other cities",
            **_scores("train", result.get("train")),
            **_scores("test", result.get("test")),
            **city_f1(result.get("cities", {})),
        }
        for name, result in baselines.items()
        if result
    ]


def city_table(table: pd.DataFrame, cities: dict[str, dict]) -> pd.DataFrame:
    """One row per labelled city: its split, its number of acquisitions and how its F1 was
    scored, then the F1 of each leaderboard row (model or baseline) on it."""
    rows = []
    for city, facts in cities.items():
        row = {
            "city": city,
            "split": facts["split"],
            "acquisitions": facts["acquisitions"],
            "scored": "out of fold" if facts["split"] == "train" else "test",
        }
        column = f"f1 {city}"
        for name, value in zip(table["name"], table.get(column, []), strict=False):
            row[name] = value
        rows.append(row)
    return pd.DataFrame(rows)


def write_leaderboard(
    metrics: dict[str, tuple[str, str]],
    kinds: dict[str, str],
    settings: dict[str, dict],
    baseline_path,
    out_path,
    cities: dict[str, dict],
    cities_path,
):
    """``metrics``: the metrics ``summary.json`` and ``cities.tsv`` by experiment or ensemble
    name; ``kinds``: whether each is an ``experiment`` or an ``ensemble``; ``settings``: what
    distinguishes each (:func:`experiment_settings`). One row each and per baseline, the
    overall scores and the F1 of each city; sorted by test F1, then training F1. And at
    ``cities_path`` the table of :func:`city_table`, from ``cities`` (split and number
    of acquisitions by city)."""
    rows = [
        model_row(
            name,
            kinds[name],
            settings[name],
            json.loads(Path(summary).read_text()),
            pd.read_csv(cities, sep="\t"),
        )
        for name, (summary, cities) in metrics.items()
    ]
    rows += baseline_rows(json.loads(Path(baseline_path).read_text()))
    city_columns = sorted({c for row in rows for c in row if c.startswith("f1 ")})
    table = pd.DataFrame(rows, columns=COLUMNS + city_columns).sort_values(
        ["test_f1", "train_f1"], ascending=False, na_position="last", kind="stable"
    )
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    with atomic_path(cities_path) as tmp:
        city_table(table, cities).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    log.info("leaderboard:\n%s", table[["name", "train_f1", "test_f1"]].to_string(index=False))
    return table
