"""Honest metrics: summed confusion matrices per scene, city and overall; threshold tuning;
histograms of backscatter for the baselines (:mod:`builtup.baseline`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from builtup.errors import InputError
from builtup.labels import BUILTUP, IGNORE
from builtup.metrics import scores
from builtup.predict import PROB_NODATA, PROB_SCALE
from builtup.rasters import atomic_path, open_raster, read_window, same_grid, strip_windows
from builtup.recipes import to_db

log = logging.getLogger(__name__)

DB_BINS = np.arange(-40.0, 20.01, 0.1)  # edges of the backscatter histograms, dB


def _pairs(raster_path, mask_path, indexes=1):
    """Strips of (raster values, mask) of two files on the same grid."""
    with open_raster(raster_path) as raster, open_raster(mask_path) as mask:
        if not same_grid(raster, mask):
            raise InputError(raster_path, f"not on the grid of its mask {mask_path}")
        for window in strip_windows(raster.height, raster.width):
            yield (
                read_window(raster, raster_path, window, indexes),
                read_window(mask, mask_path, window, 1),
            )


def probability_histograms(prob_path, mask_path) -> np.ndarray:
    """(2, 255) counts of each probability level among background and built-up pixels."""
    hist = np.zeros((2, PROB_SCALE + 1), np.int64)
    for prob, mask in _pairs(prob_path, mask_path):
        keep = (mask != IGNORE) & (prob != PROB_NODATA)
        for cls in (0, 1):
            hist[cls] += np.bincount(
                prob[keep & ((mask == BUILTUP) == bool(cls))], minlength=PROB_SCALE + 1
            )[: PROB_SCALE + 1]
    return hist


def confusion_at(hist: np.ndarray, level: int) -> np.ndarray:
    """Confusion matrix of 'built-up where value >= level' from per-class histograms."""
    positive = hist[:, level:].sum(axis=1)
    negative = hist[:, :level].sum(axis=1)
    return np.array([[negative[0], positive[0]], [negative[1], positive[1]]])


def best_level(hist: np.ndarray) -> tuple[int, float]:
    """The histogram level that maximises F1 of the built-up class, and that F1."""
    built = hist[1][::-1].cumsum()[::-1]  # built-up pixels at or above each level
    background = hist[0][::-1].cumsum()[::-1]
    missed = hist[1].sum() - built
    f1 = 2 * built / np.maximum(2 * built + background + missed, 1)
    level = int(np.argmax(f1))
    return level, float(f1[level])


def best_probability_threshold(hist: np.ndarray) -> tuple[float, float]:
    level, f1 = best_level(hist)
    return level / PROB_SCALE, f1


def backscatter_histograms(raster_path, mask_path) -> np.ndarray:
    """(2 bands VH/VV, 2 classes, bins) counts of dB values among labelled valid pixels."""
    hist = np.zeros((2, 2, len(DB_BINS) - 1), np.int64)
    for bands, mask in _pairs(raster_path, mask_path, indexes=[1, 2]):
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


def confusion_of(prob_path, mask_path, threshold: float) -> np.ndarray:
    level = int(np.ceil(threshold * PROB_SCALE - 1e-9))
    return confusion_at(probability_histograms(prob_path, mask_path), level)


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
    Training cities are scored out of fold: each was predicted by the model that never saw it.
    """
    threshold = json.loads(Path(threshold_path).read_text())["threshold"]
    scene_rows = [
        _row(
            {k: s[k] for k in ("city", "scene", "split")},
            confusion_of(s["prediction"], s["mask"], threshold),
        )
        for s in scenes
    ]
    city_matrices = {
        c["city"]: confusion_of(c["probability"], c["mask"], threshold) for c in cities
    }
    city_rows = [
        _row({"city": c["city"], "split": c["split"]}, city_matrices[c["city"]]) for c in cities
    ]
    summary = {
        "threshold": threshold,
        "evaluation_masks": "every touched pixel" if all_touched else "pixel centres",
        "overall": {},
        "baseline": json.loads(Path(baseline_path).read_text()),
    }
    for split, name in (("train", "train_out_of_fold"), ("test", "test")):
        members = [c["city"] for c in cities if c["split"] == split]
        if members:
            summary["overall"][name] = scores(sum(city_matrices[m] for m in members))
            summary["overall"][name]["cities"] = members
    with atomic_path(scenes_out) as tmp:
        pd.DataFrame(scene_rows).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    with atomic_path(cities_out) as tmp:
        pd.DataFrame(city_rows).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    with atomic_path(summary_out) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    log.info("overall: %s", {k: round(v["f1"], 4) for k, v in summary["overall"].items()})
    return summary


def choose_threshold(city_paths, mask_paths, mode, out_path) -> dict:
    """The delivery threshold: a fixed value, or ``oof``: the one maximising out-of-fold F1."""
    hist = sum(
        (probability_histograms(c, m) for c, m in zip(city_paths, mask_paths, strict=True)),
        np.zeros((2, PROB_SCALE + 1), np.int64),
    )
    best, f1 = best_probability_threshold(hist)
    result = {
        "threshold": best if mode == "oof" else float(mode),
        "mode": str(mode),
        "oof_best": best,
        "oof_best_f1": f1,
    }
    with atomic_path(out_path) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    log.info("threshold %s", result)
    return result
