"""Honest metrics: summed confusion matrices per scene, city and overall, at the delivery
threshold, against the evaluation masks, beside the baselines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from builtup.core.probability import threshold_level
from builtup.core.rasters import atomic_path
from builtup.core.scores import scores
from builtup.deliver.threshold import confusion_at, probability_histograms

log = logging.getLogger(__name__)

# What each figure's choices were made on
TUNED = {
    "train_out_of_fold": "model of the fold that holds the city out (its last epoch, schedule on "
    "the training loss); threshold from the other training cities",
    "test": "fold models as above; threshold from all training cities",
}


def confusion_of(prob_path, mask_path, threshold: float) -> np.ndarray:
    return confusion_at(probability_histograms(prob_path, mask_path), threshold_level(threshold))


def _row(keys: dict, matrix: np.ndarray) -> dict:
    return {**keys, **scores(matrix), "pixels": int(matrix.sum())}


def evaluate_experiment(
    scenes: list[dict],
    cities: list[dict],
    threshold_path,
    baseline_path,
    scenes_out,
    cities_out,
    summary_out,
    all_touched: bool = False,
) -> dict:
    """Metrics of one experiment per scene, per city and overall, beside the baselines.

    ``scenes``: dicts with city, scene, split, prediction, mask (labelled scenes);
    ``cities``: dicts with city, split, probability, mask (the reference scene's mask);
    masks are the evaluation masks, burnt with ``all_touched`` (stated in the summary).
    Training cities are scored out of fold: each was predicted by the model that never saw it
    (its last epoch, nothing chosen on that city), at the threshold tuned on the other
    training cities. Test cities are scored at the delivery threshold, tuned on the training
    cities.
    """
    thresholds = json.loads(Path(threshold_path).read_text())
    threshold = thresholds["threshold"]

    def threshold_of(item: dict) -> float:
        if item["split"] == "train":
            return thresholds["out_of_fold"][item["city"]]
        return threshold

    scene_rows = [
        _row(
            {k: s[k] for k in ("city", "scene", "split")},
            confusion_of(s["prediction"], s["mask"], threshold_of(s)),
        )
        for s in scenes
    ]
    city_matrices = {
        c["city"]: confusion_of(c["probability"], c["mask"], threshold_of(c)) for c in cities
    }
    city_rows = [
        _row(
            {"city": c["city"], "split": c["split"], "threshold": threshold_of(c)},
            city_matrices[c["city"]],
        )
        for c in cities
    ]
    summary = {
        "threshold": threshold,
        "thresholds_out_of_fold": thresholds["out_of_fold"],
        "tuned": TUNED,
        "evaluation_masks": "every touched pixel" if all_touched else "pixel centres",
        "overall": {},
        "baseline": json.loads(Path(baseline_path).read_text()),
    }
    for split, name in (("train", "train_out_of_fold"), ("test", "test")):
        members = [c["city"] for c in cities if c["split"] == split]
        if members:
            summary["overall"][name] = scores(sum(city_matrices[m] for m in members))
            summary["overall"][name]["cities"] = members
    _write_table(scene_rows, scenes_out)
    _write_table(city_rows, cities_out)
    with atomic_path(summary_out) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    log.info("overall: %s", {k: round(v["f1"], 4) for k, v in summary["overall"].items()})
    return summary


def _write_table(rows: list[dict], out_path) -> None:
    with atomic_path(out_path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
