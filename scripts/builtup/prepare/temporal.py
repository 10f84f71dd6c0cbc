"""A city's temporal stack: its acquisitions on the city's reference grid, summarised per pixel.

Built-up surfaces are bright and stable across dates and orbits, while speckle, fields and
water change: the temporal statistics of VV and VH in dB separate them better than any one
acquisition. Per pixel, over the acquisitions that have data there (the first acquisition
gives the grid; the others are warped onto it, bilinear): mean, std (population), min and
max of VV and VH in dB, the mean of each orbit direction, and the count of acquisitions.
NaN in every band where no acquisition has data (count 0), and in an orbit's mean where
no acquisition of that orbit has. Written strip by strip: memory grows with the width and
the acquisition count, never with the height.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import numpy as np
import rasterio

from builtup.core.bands import ORBITS, STACK_BANDS
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

POLARISATIONS = {"vh": 1, "vv": 2}  # bands of the 3-band rasters
SCENE_ORBIT = re.compile(r"_(ASC|DES)(?:_\d+)?$")


def orbit_of(scene: str) -> str | None:
    """The orbit direction in a scene name such as ``20150108_DES`` or ``20150207_DES_1``."""
    match = SCENE_ORBIT.search(scene)
    return match[1] if match else None


class _Sums:
    """Running per-pixel sums of one strip: count, sum and sum of squares (float64, for the
    std), min and max per polarisation, and sum and count per orbit (float32: means only)."""

    def __init__(self, shape: tuple[int, int]):
        self.count = np.zeros(shape, np.int32)
        self.total = {p: np.zeros(shape) for p in POLARISATIONS}
        self.squares = {p: np.zeros(shape) for p in POLARISATIONS}
        self.low = {p: np.full(shape, np.inf, np.float32) for p in POLARISATIONS}
        self.high = {p: np.full(shape, -np.inf, np.float32) for p in POLARISATIONS}
        self.orbit_total = {
            (o, p): np.zeros(shape, np.float32) for o in ORBITS for p in POLARISATIONS
        }
        self.orbit_count = {o: np.zeros(shape, np.int32) for o in ORBITS}

    def add(self, bands: np.ndarray, orbit: str | None) -> None:
        """Add one acquisition's (3, H, W) linear bands; 0 is no data."""
        valid = bands[0] != 0
        self.count += valid
        if orbit in ORBITS:
            self.orbit_count[orbit] += valid
        for pol, band in POLARISATIONS.items():
            db = to_db(bands[band - 1])
            np.copyto(db, np.float32(0), where=~valid)
            self.total[pol] += db
            self.squares[pol] += np.square(db, dtype=np.float64)
            np.minimum(self.low[pol], db, out=self.low[pol], where=valid)
            np.maximum(self.high[pol], db, out=self.high[pol], where=valid)
            if orbit in ORBITS:
                self.orbit_total[(orbit, pol)] += db

    def bands(self) -> np.ndarray:
        """(len(STACK_BANDS), H, W) float32 in STACK_BANDS order, written band by band so that
        no float64 copy of the whole stack exists."""
        out = np.empty((len(STACK_BANDS), *self.count.shape), np.float32)
        n = np.maximum(self.count, 1)
        index = 0
        for pol in ("vv", "vh"):
            mean = self.total[pol] / n
            out[index] = mean
            out[index + 1] = np.sqrt(np.maximum(self.squares[pol] / n - mean * mean, 0.0))
            out[index + 2], out[index + 3] = self.low[pol], self.high[pol]
            index += 4
        for orbit in ORBITS:
            k = self.orbit_count[orbit]
            for pol in ("vv", "vh"):
                np.divide(self.orbit_total[(orbit, pol)], np.maximum(k, 1), out=out[index])
                out[index][k == 0] = np.nan
                index += 1
        out[index] = self.count
        out[:, self.count == 0] = np.nan
        return out


def temporal_stack(raster_paths: list, orbits: list, out_path) -> dict:
    """Write the stack of a city's 3-band rasters (the reference acquisition first) with the
    orbit direction of each (``ASC``, ``DES`` or None)."""
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(open_raster(p)) for p in raster_paths]
        reference = sources[0]
        aligned = [
            on_grid(src, path, reference, stack, 0.0)
            for src, path in zip(sources, raster_paths, strict=True)
        ]
        profile = tiled_profile(
            reference.profile,
            count=len(STACK_BANDS),
            dtype="float32",
            nodata=float("nan"),
            codec=FLOAT_CODEC,
        )
        with atomic_path(out_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.descriptions = STACK_BANDS
            for window in strip_windows(reference.height, reference.width):
                sums = _Sums((int(window.height), int(window.width)))
                for src, path, orbit in zip(aligned, raster_paths, orbits, strict=True):
                    sums.add(read_window(src, path, window), orbit)
                dst.write(sums.bands(), window=window)
    log.info(
        "%s: %d acquisition(s) on the grid of %s", out_path, len(raster_paths), raster_paths[0]
    )
    return {
        "acquisitions": len(raster_paths),
        "bands": list(STACK_BANDS),
        "path": str(Path(out_path)),
    }
