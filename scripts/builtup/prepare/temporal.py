"""A city's temporal stack: all its acquisitions on the city's reference grid, in dB.

The first acquisition gives the grid; the others are warped onto it (bilinear). Per
acquisition two float32 bands, VV and VH in dB (:data:`~builtup.core.bands.STACK_POLARISATIONS`),
described as ``<scene>:vv`` and ``<scene>:vh``, NaN where that acquisition has no data.
The per-pixel statistics over the acquisitions (mean, spread, ...) are not stored: the
stack recipes compute them (:mod:`builtup.core.recipes`), from any subset of the
acquisitions while training and from all of them at prediction, so that a model learns
statistics of every number of acquisitions. Written strip by strip: memory grows with
the width and the acquisition count, never with the height.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import rasterio

from builtup.core.bands import SCENE_BANDS, STACK_POLARISATIONS, stack_descriptions
from builtup.core.rasters import (
    FLOAT_CODEC,
    atomic_path,
    on_grid,
    open_raster,
    read_window,
    strip_windows,
    tiled_profile,
)
from builtup.core.recipes import to_db

log = logging.getLogger(__name__)

POLARISATION_INDEXES = [SCENE_BANDS.index(pol) for pol in STACK_POLARISATIONS]


def stacked_db(bands: np.ndarray) -> np.ndarray:
    """(2, H, W) VV and VH in dB of one acquisition's (3, H, W) linear bands, NaN where the
    acquisition has no data (0)."""
    out = to_db(bands[POLARISATION_INDEXES])
    out[:, bands[0] == 0] = np.nan
    return out


def temporal_stack(raster_paths: list, out_path) -> dict:
    """Write the stack of a city's 3-band rasters, the reference acquisition first."""
    scenes = [Path(p).stem for p in raster_paths]
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(open_raster(p)) for p in raster_paths]
        reference = sources[0]
        aligned = [
            on_grid(src, path, reference, stack, 0.0)
            for src, path in zip(sources, raster_paths, strict=True)
        ]
        descriptions = stack_descriptions(scenes)
        profile = tiled_profile(
            reference.profile,
            count=len(descriptions),
            dtype="float32",
            nodata=float("nan"),
            codec=FLOAT_CODEC,
        )
        with atomic_path(out_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.descriptions = descriptions
            for window in strip_windows(reference.height, reference.width):
                strip = [
                    stacked_db(read_window(src, path, window))
                    for src, path in zip(aligned, raster_paths, strict=True)
                ]
                dst.write(np.concatenate(strip), window=window)
    log.info("%s: %d acquisition(s) on the grid of %s", out_path, len(scenes), raster_paths[0])
    return {"acquisitions": len(scenes), "bands": list(descriptions), "path": str(Path(out_path))}
