"""The encodings of every prediction the workflow writes, and reading them back.

- ``probability`` (scene predictions, city maps): uint8 ``round(254 * p)``, nodata 255, GDAL
  scale 1/254: 4x smaller than float32, with a resolution of 0.004, far below what a
  threshold needs.
- ``logit`` (the scene predictions of an experiment whose city map is the mean logit of
  its acquisitions): int16 ``round(256 * logit)``, nodata -32768, GDAL scale 1/256. Mean
  logits are decided where acquisitions disagree, and the logits of 8-bit probabilities
  stop at about +-6.2; these keep 1/256 resolution up to +-128.

Cloud-optimised GeoTIFFs with overviews. Readers take either encoding.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from builtup.core.rasters import MASK_CODEC, atomic_path, tiled_profile

PROB_SCALE = 254
PROB_NODATA = 255
# The probabilities are stored in steps of 1/254: 0 and 1 stand for the half step next to them
PROB_LOGIT_CLIP = 0.5 / PROB_SCALE


@dataclass(frozen=True)
class Encoding:
    """How one kind of prediction raster stores its values: ``stored / steps`` is the value."""

    name: str
    dtype: str
    nodata: int
    steps: int  # stored units per unit of the value
    content: str


PROBABILITY = Encoding("probability", "uint8", PROB_NODATA, PROB_SCALE, "built-up probability")
LOGIT = Encoding("logit", "int16", -32768, 256, "built-up logit")
ENCODINGS = {encoding.name: encoding for encoding in (PROBABILITY, LOGIT)}
LOGIT_LIMIT = 32767  # stored units: +-128 logits


def encoding_of(src) -> Encoding:
    """The encoding of an open prediction raster, from its data type."""
    return LOGIT if src.dtypes[0] == LOGIT.dtype else PROBABILITY


@contextlib.contextmanager
def probability_raster(
    grid_profile: dict, out_path: str | Path, encoding: Encoding = PROBABILITY
) -> Iterator:
    """An open prediction raster of ``encoding`` on the grid of ``grid_profile``, written in
    any order; it becomes the COG ``out_path`` only if the block succeeds."""
    profile = tiled_profile(
        grid_profile, count=1, dtype=encoding.dtype, nodata=encoding.nodata, codec=MASK_CODEC
    )
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as work:
        tmp = Path(work) / "prediction.tif"
        with rasterio.open(tmp, "w", **profile) as dst:
            yield dst
            dst.scales = (1 / encoding.steps,)
            dst.update_tags(content=encoding.content, scale=f"1/{encoding.steps}")
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


def _read(src, window, out_shape) -> tuple[np.ndarray, np.ndarray, Encoding]:
    encoding = encoding_of(src)
    values = src.read(1, window=window, out_shape=out_shape)
    return values, values != encoding.nodata, encoding


def read_probability(src, window=None, out_shape=None) -> tuple[np.ndarray, np.ndarray]:
    """(probability float32, valid mask) of a prediction raster (window, or resampled)."""
    values, valid, encoding = _read(src, window, out_shape)
    if encoding is LOGIT:
        return sigmoid(values.astype(np.float32) / LOGIT.steps), valid
    return values.astype(np.float32) / PROB_SCALE, valid


def threshold_level(threshold: float) -> int:
    """The lowest probability level at or above ``threshold``: 'p >= threshold' on levels."""
    return int(np.ceil(threshold * PROB_SCALE - 1e-9))


def to_levels(values: np.ndarray, encoding: Encoding) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 probability levels, valid mask) of stored values: those of a probability
    raster as they are, the rounded probability of a logit raster's."""
    valid = values != encoding.nodata
    if encoding is PROBABILITY:
        return values, valid
    probability = sigmoid(values.astype(np.float32) / LOGIT.steps)
    levels = np.where(valid, np.rint(probability * PROB_SCALE), PROB_NODATA)
    return levels.astype(np.uint8), valid


def read_logits(src, window=None) -> tuple[np.ndarray, np.ndarray]:
    """(built-up logit float32, valid mask): exact from a logit raster; from a probability
    raster, the logit of its level (0 and 1 taken as the half step next to them)."""
    values, valid, encoding = _read(src, window, None)
    if encoding is LOGIT:
        return values.astype(np.float32) / LOGIT.steps, valid
    probs = np.clip(values.astype(np.float32) / PROB_SCALE, PROB_LOGIT_CLIP, 1 - PROB_LOGIT_CLIP)
    return np.log(probs / (1 - probs)), valid


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The probability of logits; float32 exp overflows beyond 88, so they are clipped at 80."""
    return 1 / (1 + np.exp(-np.clip(logits, -80, 80)))
