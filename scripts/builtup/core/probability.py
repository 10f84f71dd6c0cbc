"""The probability encoding of every prediction the workflow writes.

The built-up probability is stored as uint8 (``round(254 * p)``, nodata 255, GDAL scale
1/254): 4x smaller than float32, with a resolution of 0.004, far below what a threshold
needs. Cloud-optimised GeoTIFF with overviews.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from builtup.core.rasters import MASK_CODEC, atomic_path, tiled_profile

PROB_SCALE = 254
PROB_NODATA = 255


@contextlib.contextmanager
def probability_raster(grid_profile: dict, out_path: str | Path) -> Iterator:
    """An open uint8 probability raster on the grid of ``grid_profile``, written in any order;
    it becomes the COG ``out_path`` only if the block succeeds."""
    profile = tiled_profile(
        grid_profile, count=1, dtype="uint8", nodata=PROB_NODATA, codec=MASK_CODEC
    )
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as work:
        tmp = Path(work) / "probability.tif"
        with rasterio.open(tmp, "w", **profile) as dst:
            yield dst
            dst.scales = (1 / PROB_SCALE,)
            dst.update_tags(content="built-up probability", scale=f"1/{PROB_SCALE}")
        write_cog(tmp, out_path)


def write_cog(src_path: str | Path, out_path: str | Path) -> None:
    """Copy a GeoTIFF to a cloud-optimised GeoTIFF with overviews, atomically."""
    with atomic_path(out_path) as tmp:
        rasterio.shutil.copy(
            src_path,
            tmp,
            driver="COG",
            compress="ZSTD",
            blocksize=512,
            overview_resampling="AVERAGE",
        )


def read_probability(src, window=None, out_shape=None) -> tuple[np.ndarray, np.ndarray]:
    """(probability float32, valid mask) of a probability raster (window, or resampled)."""
    values = src.read(1, window=window, out_shape=out_shape)
    return values.astype(np.float32) / PROB_SCALE, values != PROB_NODATA
