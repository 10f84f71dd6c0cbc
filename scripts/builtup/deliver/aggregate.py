"""City aggregation: the acquisitions of a city averaged (or voted) on one reference grid.

The reference grid is the grid of the city's first acquisition in the scenes
sheet (in sorted order). Acquisitions on another grid are warped onto it (bilinear) through a
warped VRT, strip by strip, so memory stays bounded whatever the scene size.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import rasterio
import rasterio.warp
from rasterio.coords import disjoint_bounds
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT

from builtup.core.errors import InputError
from builtup.core.probability import PROB_NODATA, PROB_SCALE, probability_raster, read_probability
from builtup.core.rasters import open_raster, same_grid, strip_windows

log = logging.getLogger(__name__)


def aggregate_city(
    prob_paths: list[str | Path], out_path: str | Path, method: str = "mean", threshold: float = 0.5
) -> dict:
    """Mean probability over the acquisitions that have data at each pixel, or the seed's vote
    (built-up where at least N-1 of the N acquisitions with data say so)."""
    if method not in ("mean", "vote"):
        raise ValueError(f"aggregation must be 'mean' or 'vote', not {method!r}")
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


def on_grid(src, path, reference, stack, nodata):
    """``src`` itself when it shares the reference grid, else a warped view onto it (bilinear,
    ``nodata`` where it has no data), kept open by ``stack``."""
    if same_grid(src, reference):
        return src
    try:
        bounds = rasterio.warp.transform_bounds(src.crs, reference.crs, *src.bounds)
    except RasterioError as err:
        raise InputError(path, f"cannot be warped onto the city grid: {err}") from None
    if disjoint_bounds(bounds, reference.bounds):
        raise InputError(path, "acquisition does not overlap the city's reference acquisition")
    log.info("%s: warped onto the reference grid", path)
    return stack.enter_context(
        WarpedVRT(
            src,
            crs=reference.crs,
            transform=reference.transform,
            width=reference.width,
            height=reference.height,
            resampling=Resampling.bilinear,
            nodata=nodata,
        )
    )


def _combine(reads: list[tuple[np.ndarray, np.ndarray]], method: str, threshold: float):
    probs = np.stack([p for p, _ in reads])
    valid = np.stack([v for _, v in reads])
    count = valid.sum(axis=0)
    if method == "mean":
        value = np.where(valid, probs, 0).sum(axis=0) / np.maximum(count, 1)
    else:
        votes = (valid & (probs >= threshold)).sum(axis=0)
        value = (votes >= np.maximum(count - 1, 1)).astype(np.float32)
    return np.where(count > 0, np.rint(value * PROB_SCALE), PROB_NODATA).astype(np.uint8)
