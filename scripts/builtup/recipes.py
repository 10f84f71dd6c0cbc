"""Input recipes: pure functions from the 3-band linear tile (VH, VV, (VH+VV)/2) to model input.

Each recipe takes ``x`` of shape (3, H, W) float32 and the boolean ``valid``
mask (H, W); it returns (C, H, W) float32 with 0 at invalid pixels. Training
applies them on the fly; normalisation statistics are computed per recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DB_FLOOR = 1e-6  # -60 dB: floor for the logarithm of backscatter (and of negative outliers)


@dataclass(frozen=True)
class Recipe:
    name: str
    channels: int
    description: str
    fn: Callable[[np.ndarray], np.ndarray]
    per_sample: bool = False  # the function needs the valid mask (per-sample statistics)

    def __call__(self, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out = self.fn(x, valid) if self.per_sample else self.fn(x)
        out = out.astype(np.float32, copy=False)
        if not valid.all():
            out[:, ~valid] = 0.0
        return out


def to_db(x: np.ndarray) -> np.ndarray:
    return np.float32(10.0) * np.log10(np.maximum(x, np.float32(DB_FLOOR)))


def _linear3(x):
    return x.copy()


def _db3(x):
    return to_db(x)


def _db5(x):
    db = to_db(x)
    vh, vv = db[0], db[1]
    return np.concatenate([db, (vv * vh)[None], ((vv + 1.0) / (vh + 1.0))[None]])


def _linear5(x):
    vh, vv = x[0], x[1]
    return np.concatenate([x, (vv - vh)[None], np.sqrt(vh * vh + vv * vv)[None]])


def _linear6(x):
    vh, vv = x[0], x[1]
    return np.concatenate(
        [x, (vv * vh)[None], ((vv + 0.01) / (vh + 0.01))[None], np.sqrt(vh * vh + vv * vv)[None]]
    )


def _log_sq(x):
    return np.log(np.maximum(x * x, np.float32(DB_FLOOR**2)))


def _minmax_pow(x, valid):
    """Per sample and band: scale valid pixels to [0, 1] by their min/max, then x^0.2 - 0.5."""
    out = np.zeros_like(x)
    if not valid.any():
        return out
    for band in range(x.shape[0]):
        values = x[band][valid]
        low, high = values.min(), values.max()
        scaled = np.clip((x[band] - low) / max(high - low, np.float32(1e-12)), 0.0, 1.0)
        out[band] = np.power(scaled, np.float32(0.2)) - np.float32(0.5)
    return out


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("linear3", 3, "VH, VV, (VH+VV)/2 in linear sigma0", _linear3),
        Recipe("db3", 3, "the 3 bands in dB", _db3),
        Recipe("db5", 5, "3 dB bands, VV_dB*VH_dB, (VV_dB+1)/(VH_dB+1)", _db5),
        Recipe("linear5", 5, "3 linear bands, VV-VH, sqrt(VH^2+VV^2)", _linear5),
        Recipe(
            "linear6", 6, "3 linear bands, VV*VH, (VV+0.01)/(VH+0.01), sqrt(VH^2+VV^2)", _linear6
        ),
        Recipe("log_sq3", 3, "log(x^2) of the 3 bands", _log_sq),
        Recipe(
            "minmax_pow3", 3, "per-sample min/max to [0, 1], then x^0.2 - 0.5", _minmax_pow, True
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown input recipe {name!r}; known: {', '.join(RECIPES)}") from None
