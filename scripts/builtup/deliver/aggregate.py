"""City aggregation: the acquisitions of a city combined on one reference grid, by the mean
of their probabilities, the mean of their logits (the 2nd-place solution's blend), or a vote.

The reference grid is the grid of the city's first acquisition in the scenes
sheet (in sorted order). Acquisitions on another grid are warped onto it (bilinear) through a
warped VRT, strip by strip, so memory stays bounded whatever the scene size.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from builtup.core.probability import PROB_NODATA, PROB_SCALE, probability_raster, read_probability
from builtup.core.rasters import on_grid, open_raster, strip_windows

log = logging.getLogger(__name__)


METHODS = ("mean", "logit", "vote")
# The probabilities are stored in steps of 1/254: 0 and 1 stand for the half step next to them
LOGIT_CLIP = 0.5 / PROB_SCALE


def aggregate_city(
    prob_paths: list[str | Path], out_path: str | Path, method: str = "mean", threshold: float = 0.5
) -> dict:
    """Per pixel, over the acquisitions that have data there: the mean probability, the
    probability of the mean logit (so that probability 0.5 is logit 0), or the seed's vote
    (built-up where at least N-1 of the N acquisitions with data say so)."""
    if method not in METHODS:
        raise ValueError(f"aggregation must be one of {', '.join(METHODS)}, not {method!r}")
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(open_raster(p)) for p in prob_paths]
        reference = sources[0]
        aligned = [
            on_grid(src, path, reference, stack, PROB_NODATA)
            for src, path in zip(sources, prob_paths, strict=True)
        ]
        with probability_raster(reference.profile, out_path) as dst:
            for window in strip_windows(reference.height, reference.width):
                reads = [read_probability(src, window) for src in aligned]
                dst.write(_combine(reads, method, threshold)[None], window=window)
    log.info(
        "%s: %s of %d acquisition(s) on the grid of %s",
        out_path,
        method,
        len(prob_paths),
        prob_paths[0],
    )
    return {"acquisitions": len(prob_paths), "method": method}


def _combine(reads: list[tuple[np.ndarray, np.ndarray]], method: str, threshold: float):
    probs = np.stack([p for p, _ in reads])
    valid = np.stack([v for _, v in reads])
    count = valid.sum(axis=0)
    if method == "vote":
        votes = (valid & (probs >= threshold)).sum(axis=0)
        value = (votes >= np.maximum(count - 1, 1)).astype(np.float32)
    elif method == "logit":
        value = _sigmoid(_mean(_logit(probs), valid, count))
    else:
        value = _mean(probs, valid, count)
    return np.where(count > 0, np.rint(value * PROB_SCALE), PROB_NODATA).astype(np.uint8)


def _mean(values: np.ndarray, valid: np.ndarray, count: np.ndarray) -> np.ndarray:
    return np.where(valid, values, 0).sum(axis=0) / np.maximum(count, 1)


def _logit(probs: np.ndarray) -> np.ndarray:
    probs = np.clip(probs, LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(probs / (1 - probs))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))
