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

from builtup.core.probability import (
    PROB_NODATA,
    PROB_SCALE,
    encoding_of,
    probability_raster,
    read_logits,
    read_probability,
    sigmoid,
)
from builtup.core.rasters import on_grid, open_raster, strip_windows

log = logging.getLogger(__name__)


METHODS = ("mean", "logit", "vote")


def aggregate_city(
    prob_paths: list[str | Path], out_path: str | Path, method: str, threshold: float
) -> dict:
    """Per pixel, over the acquisitions that have data there: the mean probability, the
    probability of the mean logit (so that probability 0.5 is logit 0; exact from logit
    rasters, :mod:`builtup.core.probability`), or the 3rd place's vote
    (built-up where at least N-1 of the N acquisitions with data say so)."""
    if method not in METHODS:
        raise ValueError(f"aggregation must be one of {', '.join(METHODS)}, not {method!r}")
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(open_raster(p)) for p in prob_paths]
        reference = sources[0]
        aligned = [
            on_grid(src, path, reference, stack, encoding_of(src).nodata)
            for src, path in zip(sources, prob_paths, strict=True)
        ]
        read = read_logits if method == "logit" else read_probability
        with probability_raster(reference.profile, out_path) as dst:
            for window in strip_windows(reference.height, reference.width):
                reads = [read(src, window) for src in aligned]
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
    """``reads``: (probabilities, or logits for ``logit``, and valid mask) per acquisition."""
    values = np.stack([p for p, _ in reads])
    valid = np.stack([v for _, v in reads])
    count = valid.sum(axis=0)
    if method == "vote":
        votes = (valid & (values >= threshold)).sum(axis=0)
        value = (votes >= np.maximum(count - 1, 1)).astype(np.float32)
    elif method == "logit":
        value = sigmoid(_mean(values, valid, count))
    else:
        value = _mean(values, valid, count)
    return np.where(count > 0, np.rint(value * PROB_SCALE), PROB_NODATA).astype(np.uint8)


def _mean(values: np.ndarray, valid: np.ndarray, count: np.ndarray) -> np.ndarray:
    return np.where(valid, values, 0).sum(axis=0) / np.maximum(count, 1)


def ensemble_scene(member_paths: list[str | Path], out_path: str | Path) -> dict:
    """The pixel mean of the members' predictions of one scene (all on the scene's grid)."""
    return aggregate_city(member_paths, out_path, "mean", threshold=0.5)
