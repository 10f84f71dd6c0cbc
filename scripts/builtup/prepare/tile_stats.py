"""Tile statistics (one table row per tile) and per-recipe moments of a scene's usable tiles."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from builtup.core.bands import BANDS, SCENE, STACK, kind_of
from builtup.core.classes import BUILTUP, IGNORE
from builtup.core.moments import Moments
from builtup.core.parallel import in_order
from builtup.core.rasters import atomic_path
from builtup.core.recipes import CHANNELS, Features, get_recipe
from builtup.prepare.tiles import TileSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkipRules:
    """When a tile is left out of training and statistics.

    A tile is skipped when its nodata share reaches ``max_nodata_ratio`` (1.0: only
    tiles entirely without data), when every band is constant, or when a band's
    minimum falls below ``min_below`` / its maximum exceeds ``max_above`` (the
    seed skipped tiles whose VH minimum was below -10000).
    """

    max_nodata_ratio: float = 1.0
    min_below: float | None = -10000.0
    max_above: float | None = None

    def reason(self, nodata_ratio: float, mins: np.ndarray, maxs: np.ndarray) -> str:
        if nodata_ratio >= self.max_nodata_ratio:
            return "nodata"
        if np.all(mins == maxs):
            return "constant"
        if self.min_below is not None and np.any(mins < self.min_below):
            return "outlier_min"
        if self.max_above is not None and np.any(maxs > self.max_above):
            return "outlier_max"
        return ""


def tile_statistics(
    tiles: TileSet,
    city: str,
    scene: str,
    rules: SkipRules = SkipRules(),
    recipes: tuple[str, ...] = (),
    threads: int = 1,
) -> tuple[pd.DataFrame, dict[str, Moments]]:
    """Statistics of every tile of a scene (or of a city's stack, named ``stack``), and the
    moments over usable tiles of each recipe that reads this kind of raster.

    A channel that several recipes share (the bands, the dB bands, ...) is evaluated
    and summarised once per tile.

    Tiles are read in order and summarised by ``threads`` threads (numpy releases the
    GIL); each tile's moments are merged in tile order, so the result does not depend
    on the number of threads.
    """
    windows = tiles.meta()["windows"]
    kind = kind_of(scene)
    recipes = tuple(name for name in recipes if get_recipe(name).kind == kind)
    moments = {name: Moments(get_recipe(name).channels) for name in recipes}
    rows = []
    with ThreadPoolExecutor(threads) as pool:
        summaries = in_order(
            pool,
            lambda tile: _tile_summary(*tile, kind, rules, recipes),
            tiles.iter_tiles(),
            threads,
        )
        for index, (record, tile_moments) in enumerate(summaries):
            col, row, width, height = windows[index]
            rows.append(
                {
                    "city": city,
                    "scene": scene,
                    "tile": index,
                    "col_off": col,
                    "row_off": row,
                    "width": width,
                    "height": height,
                    **record,
                }
            )
            for name, part in tile_moments.items():
                moments[name].merge(part)
    table = pd.DataFrame(rows)
    skipped = int(table["skip"].sum())
    log.info("%s/%s: %d tiles, %d skipped, %d threads", city, scene, len(table), skipped, threads)
    return table, moments


def _tile_summary(
    image: np.ndarray,
    mask: np.ndarray,
    kind: str,
    rules: SkipRules,
    recipes: tuple[str, ...],
) -> tuple[dict, dict[str, Moments]]:
    """The tile's table row (of its bands; of a stack, the statistics over all its
    acquisitions) and the moments of each recipe's channels, every channel computed once."""
    valid = mask != IGNORE
    index = valid_index(valid)
    bands = BANDS[kind]
    features = {kind: Features(image, valid, CHANNELS[kind])}
    summarised = image if kind == SCENE else features[STACK].stack(bands)
    record, band_moments = _tile_record(summarised, mask, valid, index, bands, rules)
    if record["skip"]:
        return record, {}
    channels = {(kind, band): band_moments.channel(i) for i, band in enumerate(bands)}
    moments = {}
    for name in recipes:
        recipe = get_recipe(name)
        family = features.setdefault(recipe.family, recipe.features(image, valid))
        for channel in recipe.channel_names:
            if (recipe.family, channel) not in channels:
                channels[(recipe.family, channel)] = _channel_moments(family, channel, index)
        moments[name] = Moments.stack(
            [channels[(recipe.family, channel)] for channel in recipe.channel_names]
        )
    return record, moments


def _channel_moments(features: Features, channel: str, index) -> Moments:
    """Moments of one channel over the valid pixels (of a series channel, over every
    acquisition's pixels with data)."""
    values = features[channel]
    moments = Moments(1)
    if values.ndim == 3:
        moments.add(values[features.present & features.valid][None])
    else:
        moments.add(valid_values(values[None], index))
    return moments


def valid_index(valid: np.ndarray) -> slice | np.ndarray:
    """The valid pixels of a flattened tile, found once for all its channels: every pixel
    (a slice, so that samples are views) or their positions."""
    return slice(None) if valid.all() else np.flatnonzero(valid)


def valid_values(array: np.ndarray, index: slice | np.ndarray) -> np.ndarray:
    """(C, n) values of a (C, H, W) array at ``index`` (from :func:`valid_index`)."""
    return array.reshape(array.shape[0], -1)[:, index]


def _tile_record(
    image: np.ndarray, mask: np.ndarray, valid: np.ndarray, index, bands, rules: SkipRules
) -> tuple[dict, Moments]:
    """The tile's table row, and the moments of its bands over its valid pixels."""
    n_valid = int(valid.sum())
    nodata_ratio = 1.0 - n_valid / valid.size
    record: dict = {}
    moments = Moments(image.shape[0])
    if n_valid:
        values = valid_values(image, index)
        mins, maxs = values.min(axis=1).astype(np.float64), values.max(axis=1).astype(np.float64)
        moments.add(values)
        means, stds = moments.mean, moments.std
    else:
        mins = maxs = means = stds = np.full(image.shape[0], np.nan)
    for key, lo, hi, mu, sd in zip(bands, mins, maxs, means, stds, strict=True):
        record.update({f"{key}_min": lo, f"{key}_max": hi, f"{key}_mean": mu, f"{key}_std": sd})
    record["target_ratio"] = float((mask == BUILTUP).sum() / n_valid) if n_valid else 0.0
    record["nodata_ratio"] = nodata_ratio
    reason = rules.reason(nodata_ratio, mins, maxs)
    record["skip"] = bool(reason)
    record["skip_reason"] = reason
    return record, moments


def write_statistics(table: pd.DataFrame, moments: dict[str, Moments], table_path, moments_path):
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_path(moments_path) as tmp:
        tmp.write_text(json.dumps({name: m.to_dict() for name, m in moments.items()}, indent=1))


def read_statistics(table_path: str | Path) -> pd.DataFrame:
    return pd.read_csv(
        table_path,
        sep="\t",
        keep_default_na=False,
        na_values=["nan", "NaN"],
        dtype={"skip_reason": str},
    )
