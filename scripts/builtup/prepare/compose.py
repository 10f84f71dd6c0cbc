"""Ingestion: a VV/VH pair becomes one 3-band linear raster (VH, VV, (VH+VV)/2).

Inputs may be linear sigma0 (the UNOSAT default) or dB, with nodata 0 or NaN,
one band per file or both polarisations in one file. The output is always
linear float32 with nodata 0 on the VV grid, so every later stage sees one
convention.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from builtup.core.errors import InputError
from builtup.core.rasters import (
    FLOAT_CODEC,
    atomic_path,
    describe_grid,
    open_raster,
    read_window,
    same_grid,
    strip_windows,
    tiled_profile,
)

log = logging.getLogger(__name__)

BAND_NAMES = ("VH", "VV", "(VH+VV)/2")
NODATA = 0.0


@dataclass(frozen=True)
class InputConvention:
    """How raw scenes encode backscatter: ``units`` linear|db, ``nodata`` a number or nan."""

    units: str = "linear"
    nodata: float = 0.0

    def __post_init__(self):
        if self.units not in ("linear", "db"):
            raise ValueError(f"input units must be 'linear' or 'db', not {self.units!r}")

    def valid_pixels(self, values: np.ndarray, path: str | Path) -> np.ndarray:
        """Boolean mask of valid pixels; non-finite values that are not the nodata code fail."""
        finite = np.isfinite(values)
        if math.isnan(self.nodata):
            if np.isinf(values).any():
                raise InputError(path, "infinite values in the scene (nodata is declared as NaN)")
            return finite
        if not finite.all():
            raise InputError(
                path,
                f"{int((~finite).sum())} NaN/inf values where nodata is declared as "
                f"{self.nodata:g}; set input.nodata: nan in the config if NaN marks nodata",
            )
        return values != self.nodata

    def to_linear(self, values: np.ndarray) -> np.ndarray:
        if self.units == "db":
            return np.power(np.float32(10.0), values / np.float32(10.0), dtype=np.float32)
        return values.astype(np.float32, copy=False)


def compose_three_band(
    vv_path: str | Path,
    vh_path: str | Path,
    out_path: str | Path,
    convention: InputConvention = InputConvention(),
    vv_band: int = 1,
    vh_band: int = 1,
    codec: dict = FLOAT_CODEC,
) -> dict:
    """Write the 3-band raster of one acquisition by strips; return a summary of its pixels.

    ``codec``: GeoTIFF creation options of the compression (the workflow's by default).
    """
    with open_raster(vv_path) as vv, open_raster(vh_path) as vh:
        _check_bands(vv, vv_path, vv_band)
        _check_bands(vh, vh_path, vh_band)
        if not same_grid(vv, vh):
            raise InputError(
                vh_path,
                f"VH grid ({describe_grid(vh)}) differs from VV grid ({describe_grid(vv)})",
            )
        profile = tiled_profile(vv.profile, count=3, dtype="float32", nodata=NODATA, codec=codec)
        valid_total = 0
        with atomic_path(out_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.descriptions = BAND_NAMES
            dst.update_tags(units="linear sigma0", source_vv=str(vv_path), source_vh=str(vh_path))
            for window in strip_windows(vv.height, vv.width):
                vv_values = read_window(vv, vv_path, window, vv_band)
                vh_values = read_window(vh, vh_path, window, vh_band)
                valid = convention.valid_pixels(vv_values, vv_path) & convention.valid_pixels(
                    vh_values, vh_path
                )
                dst.write(_three_bands(convention, vh_values, vv_values, valid), window=window)
                valid_total += int(valid.sum())
            if valid_total == 0:
                raise InputError(vv_path, "scene is entirely nodata (no valid pixel in VV and VH)")
        width, height = vv.width, vv.height
    log.info(
        "%s: %d x %d px, %.1f%% valid",
        out_path,
        width,
        height,
        100 * valid_total / (width * height),
    )
    return {"width": width, "height": height, "valid_pixels": valid_total}


def _three_bands(convention, vh_values, vv_values, valid) -> np.ndarray:
    out = np.zeros((3, *valid.shape), dtype=np.float32)
    np.copyto(out[0], convention.to_linear(vh_values), where=valid)
    np.copyto(out[1], convention.to_linear(vv_values), where=valid)
    np.add(out[0], out[1], out=out[2])
    out[2] *= np.float32(0.5)
    return out


def _check_bands(src, path, band: int) -> None:
    if not 1 <= band <= src.count:
        raise InputError(path, f"band {band} requested but the file has {src.count} band(s)")
    if not np.issubdtype(np.dtype(src.dtypes[band - 1]), np.number):
        raise InputError(path, f"band {band} has non-numeric type {src.dtypes[band - 1]}")
