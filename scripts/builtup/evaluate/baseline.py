"""The simplest methods that use the model's information: thresholds on backscatter.

A learned model earns its place only by beating them, scored the same way:

- single scene: "VV (or VH) >= t dB" on each acquisition, scored per scene;
- multi-temporal: the mean dB of VV (or VH) over a city's acquisitions on its reference
  grid, ">= t", scored per city like the model's city maps.

Band and threshold are tuned for F1 on the training cities; the test cities are scored with
that rule, and each training city with the rule tuned on the other training cities (as the
model's out-of-fold figure: nothing tuned on the city it scores).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from builtup.core.classes import BUILTUP, IGNORE
from builtup.core.rasters import (
    atomic_path,
    paired_strips,
)
from builtup.core.recipes import get_recipe, to_db
from builtup.core.scores import scores
from builtup.deliver.threshold import best_level, confusion_at, leave_one_out

log = logging.getLogger(__name__)

DB_BINS = np.arange(-40.0, 20.01, 0.1)  # edges of the backscatter histograms, dB

SPLITS = ("train", "test")


def backscatter_histograms(raster_path, mask_path) -> np.ndarray:
    """(2 bands VH/VV, 2 classes, bins) counts of dB values among labelled valid pixels."""
    hist = np.zeros((2, 2, len(DB_BINS) - 1), np.int64)
    for bands, mask in paired_strips(raster_path, mask_path, indexes=[1, 2]):
        hist += db_histograms(to_db(bands), mask, bands[0] != 0)
    return hist


def db_histograms(db: np.ndarray, mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(2 bands, 2 classes, bins) counts of the (2, H, W) dB values of valid labelled pixels;
    values beyond the bins (floored outliers, bright returns) count in the edge bins."""
    hist = np.zeros((2, 2, len(DB_BINS) - 1), np.int64)
    keep = valid & (mask != IGNORE)
    built = mask[keep] == BUILTUP
    for b in range(2):
        values = np.clip(db[b][keep], DB_BINS[0], DB_BINS[-1])
        for cls in (0, 1):
            hist[b, cls] += np.histogram(values[built == bool(cls)], DB_BINS)[0]
    return hist


def best_backscatter_threshold(hist: np.ndarray) -> dict:
    """'Built-up where band >= t dB', the band and t that maximise F1 on these histograms."""
    best = {"f1": -1.0}
    for b, band in enumerate(("VH", "VV")):
        level, f1 = best_level(hist[b])
        if f1 > best["f1"]:
            best = {
                "band": band,
                "threshold_db": float(DB_BINS[level]),
                "f1": f1,
                "level": level,
                "index": b,
            }
    return best


def _empty() -> np.ndarray:
    return np.zeros((2, 2, len(DB_BINS) - 1), np.int64)


def city_mean_db_histograms(stack_path, mask_path) -> np.ndarray:
    """(2 bands, 2 classes, bins) counts of the mean dB over a city's acquisitions: the VH and
    VV means over every acquisition of its temporal stack (:mod:`builtup.prepare.temporal`)."""
    hist = _empty()
    means = get_recipe("stack_mean")
    for values, mask in paired_strips(stack_path, mask_path, indexes=None):
        features = means.features(values, mask != IGNORE)
        hist += db_histograms(features.stack(("vh_mean", "vv_mean")), mask, features.count > 0)
    return hist


def _rule(best: dict, what: str) -> str:
    return (
        f"{what}{best['band']} >= {best['threshold_db']:.1f} dB (tuned on the training cities; "
        "each training city scored with the rule tuned on the others)"
    )


def _tuned(histograms: dict, splits: dict, city_of) -> tuple[dict, dict]:
    """The best rule on the training items' summed histograms (for the test items), and each
    item's confusion: a training item's under the rule tuned on the other training cities."""
    train = {k: h for k, h in histograms.items() if splits[k] == "train"}
    if not train or not sum(train.values()).any():
        return {}, {}
    best = best_backscatter_threshold(sum(train.values()))
    per_city: dict = {}
    for key, hist in train.items():
        per_city[city_of(key)] = per_city.get(city_of(key), 0) + hist
    by_city = (
        leave_one_out(per_city, best_backscatter_threshold)
        if len(per_city) > 1
        else dict.fromkeys(per_city, best)
    )
    matrices = {}
    for key, hist in histograms.items():
        rule = by_city[city_of(key)] if splits[key] == "train" else best
        matrices[key] = confusion_at(hist[rule["index"]], rule["level"])
    return best, matrices


def _by_split(matrices: dict, splits: dict) -> dict:
    result = {}
    for split in SPLITS:
        members = [k for k in matrices if splits[k] == split]
        if members:
            result[split] = scores(sum(matrices[m] for m in members))
    return result


def single_scene_baseline(scenes: list[dict]) -> dict:
    """``scenes``: dicts with city, scene, split, raster, mask."""
    histograms = {
        (s["city"], s["scene"]): backscatter_histograms(s["raster"], s["mask"]) for s in scenes
    }
    splits = {(s["city"], s["scene"]): s["split"] for s in scenes}
    best, matrices = _tuned(histograms, splits, city_of=lambda key: key[0])
    if not best:
        return {}
    by_city: dict[str, np.ndarray] = {}
    for (city, _), matrix in matrices.items():
        by_city[city] = by_city.get(city, 0) + matrix
    return {
        "rule": _rule(best, ""),
        **_by_split(matrices, splits),
        "cities": {city: scores(m) for city, m in by_city.items()},
    }


def multi_temporal_baseline(cities: list[dict]) -> tuple[dict, list[dict]]:
    """``cities``: dicts with city, split, stack (its temporal stack), mask.
    Returns the summary and one row of scores per city."""
    histograms = {c["city"]: city_mean_db_histograms(c["stack"], c["mask"]) for c in cities}
    splits = {c["city"]: c["split"] for c in cities}
    best, matrices = _tuned(histograms, splits, city_of=lambda key: key)
    if not best:
        return {}, []
    rows = [
        {"city": c, "split": splits[c], **scores(m), "pixels": int(m.sum())}
        for c, m in matrices.items()
    ]
    summary = {
        "rule": _rule(best, "mean over the acquisitions of "),
        **_by_split(matrices, splits),
        "cities": {city: scores(m) for city, m in matrices.items()},
    }
    return summary, rows


def write_baselines(scenes: list[dict], cities: list[dict], summary_out, cities_out) -> dict:
    """Both baselines: summary.json (single_scene, multi_temporal) and the per-city table."""
    multi, rows = multi_temporal_baseline(cities)
    summary = {"single_scene": single_scene_baseline(scenes), "multi_temporal": multi}
    with atomic_path(cities_out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    with atomic_path(summary_out) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    log.info(
        "baselines: %s",
        {k: {s: round(v[s]["f1"], 4) for s in SPLITS if s in v} for k, v in summary.items()},
    )
    return summary
