"""The delivery threshold: per-class histograms of probability levels, F1 at each level, and
the level that maximises it (``oof``) or a fixed value."""

from __future__ import annotations

import json
import logging

import numpy as np

from builtup.core.classes import BUILTUP, IGNORE
from builtup.core.probability import PROB_SCALE, encoding_of, to_levels
from builtup.core.rasters import atomic_path, open_raster, paired_strips

log = logging.getLogger(__name__)


def probability_histograms(prob_path, mask_path) -> np.ndarray:
    """(2, 255) counts of each probability level among background and built-up pixels, of a
    prediction raster of either encoding."""
    hist = np.zeros((2, PROB_SCALE + 1), np.int64)
    with open_raster(prob_path) as src:
        encoding = encoding_of(src)
    for values, mask in paired_strips(prob_path, mask_path):
        prob, valid = to_levels(values, encoding)
        keep = (mask != IGNORE) & valid
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


def leave_one_out(histograms: dict[str, np.ndarray], choose) -> dict:
    """For each key (a training city), ``choose`` applied to the summed histograms of the
    other keys: what that city is scored with out of fold, tuned on no pixel of its own."""
    return {
        key: choose(sum(h for other, h in histograms.items() if other != key)) for key in histograms
    }


def choose_threshold(city_paths, mask_paths, cities, mode, out_path) -> dict:
    """The delivery threshold (for the test cities' maps and shapefiles): a fixed value, or
    ``oof``: the one maximising F1 over the training cities' out-of-fold maps. Each training
    city's own out-of-fold score uses the threshold of the other training cities
    (``out_of_fold``), so that no figure is tuned on the city it scores."""
    histograms = {
        city: probability_histograms(c, m)
        for city, c, m in zip(cities, city_paths, mask_paths, strict=True)
    }
    best, f1 = best_probability_threshold(sum(histograms.values()))
    if mode == "oof":
        threshold = best
        out_of_fold = leave_one_out(histograms, lambda h: best_probability_threshold(h)[0])
    else:
        threshold = float(mode)
        out_of_fold = dict.fromkeys(histograms, threshold)
    result = {
        "threshold": threshold,
        "mode": str(mode),
        "oof_best": best,
        "oof_best_f1": f1,
        "out_of_fold": out_of_fold,
    }
    with atomic_path(out_path) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    log.info("threshold %s", result)
    return result
