"""Raster I/O shared by every stage: safe opening, grid checks, windows, atomic writes."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
import rasterio.warp
from rasterio.coords import disjoint_bounds
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from builtup.core.errors import InputError

log = logging.getLogger(__name__)

# GDAL's block cache defaults to 5% of RAM (1.2 GB on 24 GB) and counts in every
# process's RSS; strips are read once, so a small cache costs nothing.
os.environ.setdefault("GDAL_CACHEMAX", "128")

# Block size of every GeoTIFF the workflow writes; strips of this many rows are
# the unit of windowed processing, so memory stays bounded by width x BLOCK.
BLOCK = 512

# ZSTD level 1 with the floating-point predictor: measured by
# benchmarks/bench_formats.py as the best write speed per byte saved on
# speckled float32 backscatter; on a full-size scene (bench_prepare.py --codec)
# dropping the predictor makes the raster 10% bigger for 4% less stage time
# (see docs/benchmarks.md).
FLOAT_CODEC = {"compress": "zstd", "zstd_level": 1, "predictor": 3}
MASK_CODEC = {"compress": "zstd", "zstd_level": 1, "predictor": 2}

# Two grids are one when their origins lie within ORIGIN_TOLERANCE_PX pixels of each other
# and their pixel sizes and rotations agree within PIXEL_SIZE_RTOL (relative): tolerances in
# pixel units, since a relative tolerance on a UTM northing (3.7e6 m) would hide 0.36 px.
ORIGIN_TOLERANCE_PX = 0.01
PIXEL_SIZE_RTOL = 1e-6


def tiled_profile(src_profile: dict, *, count: int, dtype: str, nodata, codec: dict) -> dict:
    """A tiled, compressed GeoTIFF profile on the grid of ``src_profile``."""
    return {
        "driver": "GTiff",
        "width": src_profile["width"],
        "height": src_profile["height"],
        "crs": src_profile["crs"],
        "transform": src_profile["transform"],
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "bigtiff": "if_safer",
        **codec,
    }


@contextlib.contextmanager
def open_raster(path: str | Path, *, need_crs: bool = True) -> Iterator[rasterio.DatasetReader]:
    """Open a raster for reading; a missing, corrupt or CRS-less file raises InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    try:
        src = rasterio.open(path)
    except RasterioError as err:
        raise InputError(
            path, f"cannot be read as a raster (corrupt or truncated?): {err}"
        ) from err
    with src:
        if need_crs and src.crs is None:
            raise InputError(path, "raster has no CRS (georeference missing)")
        yield src


def read_window(src, path: str | Path, window: Window, indexes=None) -> np.ndarray:
    """Read a window; a decoding failure (truncated file) raises InputError naming the file."""
    try:
        return src.read(indexes, window=window)
    except RasterioError as err:
        raise InputError(path, f"cannot be decoded (corrupt or truncated?): {err}") from err


def is_nodata(values: np.ndarray, nodata) -> np.ndarray:
    """Where ``values`` hold the raster's nodata code (NaN for the temporal stacks)."""
    if nodata is not None and np.isnan(nodata):
        return np.isnan(values)
    return values == nodata


def strip_windows(height: int, width: int, rows: int = BLOCK) -> Iterator[Window]:
    """Full-width windows of ``rows`` rows covering the raster top to bottom."""
    for row in range(0, height, rows):
        yield Window(0, row, width, min(rows, height - row))


def same_grid(a, b) -> bool:
    """Whether two datasets (or profiles) share CRS, shape and transform."""
    if (a.width, a.height) != (b.width, b.height) or a.crs != b.crs:
        return False
    ta, tb = a.transform, b.transform
    size = np.array([ta.a, ta.b, ta.d, ta.e])
    if not np.allclose(
        size, [tb.a, tb.b, tb.d, tb.e], rtol=0, atol=PIXEL_SIZE_RTOL * np.abs(size).max()
    ):
        return False
    col, row = ~ta * (tb.c, tb.f)  # b's origin in a's pixel coordinates
    return bool(np.hypot(col, row) <= ORIGIN_TOLERANCE_PX)


def paired_strips(raster_path, mask_path, indexes=1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Strips of (raster values, mask) of two files on the same grid."""
    with open_raster(raster_path) as raster, open_raster(mask_path) as mask:
        if not same_grid(raster, mask):
            raise InputError(raster_path, f"not on the grid of its mask {mask_path}")
        for window in strip_windows(raster.height, raster.width):
            yield (
                read_window(raster, raster_path, window, indexes),
                read_window(mask, mask_path, window, 1),
            )


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


def describe_grid(ds) -> str:
    t = ds.transform
    origin = f"origin ({t.c:.4f}, {t.f:.4f})"
    return f"{ds.width}x{ds.height} px, {origin}, pixel {t.a:.6g} x {-t.e:.6g}, {ds.crs}"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it becomes ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would survive the rename
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
