"""City folds: each training city is held out once; normalisation from the others' tiles."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from builtup.core.bands import kind_of
from builtup.core.errors import InputError
from builtup.core.moments import Moments
from builtup.core.rasters import atomic_path
from builtup.prepare.tile_stats import read_statistics

log = logging.getLogger(__name__)

ROLES = ("train", "val")
ALL_CITIES = "all"  # the fold that holds out nothing: one model on every training city


def fold_cities(fold: str, train_cities: list[str]) -> tuple[list[str], list[str]]:
    """(training cities, validation cities) of a fold named by its held-out city, or 'all'."""
    if fold == ALL_CITIES:
        return list(train_cities), []
    if fold not in train_cities:
        raise ValueError(f"fold {fold!r} is not a training city ({', '.join(train_cities)})")
    return [c for c in train_cities if c != fold], [fold]


def build_fold(
    fold: str,
    train_cities: list[str],
    stats_paths: list[str | Path],
    moments_paths: list[str | Path],
) -> tuple[pd.DataFrame, dict]:
    """The fold's tile table (with a ``role`` column) and its normalisation per recipe."""
    fit_cities, val_cities = fold_cities(fold, train_cities)
    tiles, merged = _fold_tiles(fit_cities, val_cities, stats_paths, moments_paths)
    usable = 0 if tiles.empty else int(((tiles["role"] == "train") & ~tiles["skip"]).sum())
    if usable == 0:
        raise InputError(
            stats_paths[0] if stats_paths else fold,
            f"fold {fold}: no usable training tile in cities {', '.join(fit_cities)} "
            "(all tiles skipped or none cut)",
        )
    summary = {
        "fold": fold,
        "train_cities": fit_cities,
        "val_cities": val_cities,
        "train_tiles": usable,
        "val_tiles": int(((tiles["role"] == "val") & ~tiles["skip"]).sum()),
        "tiles_by_kind": _tiles_by_kind(tiles),
        "normalisation": _normalisation(merged),
    }
    log.info(
        "fold %s: %d training tiles from %s, validation %s",
        fold,
        usable,
        fit_cities,
        val_cities or "none",
    )
    return tiles, summary


def _fold_tiles(fit_cities, val_cities, stats_paths, moments_paths):
    """The tables of the fold's scenes with their role, and the training scenes' moments
    merged per recipe."""
    tables, merged = [], {}
    for stats_path, moments_path in zip(stats_paths, moments_paths, strict=True):
        table = read_statistics(stats_path)
        city = table["city"].iloc[0] if len(table) else None
        if city in fit_cities:
            table["role"] = "train"
            for name, data in json.loads(Path(moments_path).read_text()).items():
                merged.setdefault(name, Moments(len(data["mean"]))).merge(Moments.from_dict(data))
        elif city in val_cities:
            table["role"] = "val"
        else:
            continue
        tables.append(table)
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), merged


def _tiles_by_kind(tiles: pd.DataFrame) -> dict:
    """Usable tiles per role of each kind of raster (scenes, the cities' temporal stacks)."""
    usable = tiles[~tiles["skip"]]
    kinds = usable["scene"].astype(str).map(kind_of)
    return {
        kind: usable[kinds == kind]["role"].value_counts().reindex(ROLES, fill_value=0).to_dict()
        for kind in sorted(set(kinds))
    }


def _normalisation(merged: dict[str, Moments]) -> dict:
    """Mean and std per recipe channel. A channel constant over the fold's training pixels
    (the temporal std of cities with one acquisition) gets std 1: it normalises to x - mean
    instead of dividing by zero."""
    return {
        name: {
            "mean": m.mean.tolist(),
            "std": np.where(m.std > 0, m.std, 1.0).tolist(),
            "pixels": int(m.count),
        }
        for name, m in merged.items()
    }


def write_fold(tiles: pd.DataFrame, summary: dict, tiles_path, summary_path) -> None:
    with atomic_path(tiles_path) as tmp:
        tiles.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_path(summary_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
