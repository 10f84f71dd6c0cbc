"""Label polygons: checked loading, and rasterisation onto a scene's grid."""

from __future__ import annotations

import logging
from pathlib import Path

import fiona
import numpy as np
import rasterio
import shapely
from fiona.errors import FionaError
from rasterio import features, warp
from shapely.geometry import shape

from builtup.core.classes import BACKGROUND, BUILTUP, IGNORE
from builtup.core.errors import InputError
from builtup.core.rasters import (
    MASK_CODEC,
    atomic_path,
    is_nodata,
    open_raster,
    read_window,
    strip_windows,
    tiled_profile,
)

log = logging.getLogger(__name__)


def load_polygons(path: str | Path) -> tuple[list, object]:
    """Polygons of a label file and their CRS; invalid ones are repaired (and logged).

    Raises InputError for a missing, unreadable, empty or unprojected file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "label file does not exist")
    if path.suffix.lower() == ".shp" and not path.with_suffix(".prj").exists():
        raise InputError(path, "shapefile has no .prj (CRS unknown); add one or reproject it")
    try:
        with fiona.open(path) as src:
            crs = src.crs
            geoms = [shape(f.geometry) for f in src if f.geometry is not None]
    except (FionaError, OSError, ValueError) as err:
        raise InputError(path, f"cannot be read as vector data: {err}") from err
    if not crs:
        raise InputError(path, "vector file has no CRS")
    polygons = _polygonal(_repaired(geoms, path))
    if not polygons:
        raise InputError(path, "label file holds no polygon (empty)")
    return polygons, crs


def _repaired(geoms: list, path: Path) -> list:
    is_valid = shapely.is_valid(np.asarray(geoms, dtype=object))
    invalid = np.flatnonzero(~is_valid).tolist()
    if invalid:
        log.warning(
            "%s: repaired %d invalid geometr%s (e.g. self-intersection) with make_valid; "
            "feature indices %s",
            path,
            len(invalid),
            "y" if len(invalid) == 1 else "ies",
            invalid[:20],
        )
    return [g if ok else shapely.make_valid(g) for g, ok in zip(geoms, is_valid, strict=True)]


def _polygonal(geoms: list) -> list:
    """Keep the polygonal parts (make_valid can yield collections with lines)."""
    polygons = []
    for geom in geoms:
        parts = shapely.get_parts(geom)
        polygons.extend(
            p for p in parts if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty
        )
    return polygons


def reproject_polygons(polygons: list, src_crs, dst_crs) -> list:
    """The polygons in ``dst_crs``: every vertex in one GDAL call, point by point."""

    def transform(coords: np.ndarray) -> np.ndarray:
        xs, ys = warp.transform(src_crs, dst_crs, coords[:, 0], coords[:, 1])
        return np.column_stack([xs, ys])

    return list(shapely.transform(np.asarray(polygons, dtype=object), transform))


def rasterize_mask(
    scene_path: str | Path, label_path: str | Path, out_path: str | Path, all_touched: bool = True
) -> dict:
    """Mask on the grid of a scene (or a stack): 0 background, 1 built-up, 255 where every
    band is nodata (a scene's bands have data together; a stack's where any acquisition has)."""
    polygons, label_crs = load_polygons(label_path)
    with open_raster(scene_path) as scene:
        projected = reproject_polygons(polygons, label_crs, scene.crs)
        tree = shapely.STRtree(projected)
        profile = tiled_profile(
            scene.profile, count=1, dtype="uint8", nodata=IGNORE, codec=MASK_CODEC
        )
        counts = np.zeros(256, dtype=np.int64)
        with atomic_path(out_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for window in strip_windows(scene.height, scene.width):
                transform = scene.window_transform(window)
                bounds = rasterio.windows.bounds(window, scene.transform)
                hits = tree.query(shapely.box(*bounds))
                shape_hw = (int(window.height), int(window.width))
                mask = _burn([projected[i] for i in hits], shape_hw, transform, all_touched)
                values = read_window(scene, scene_path, window)
                mask[is_nodata(values, scene.nodata).all(axis=0)] = IGNORE
                dst.write(mask, 1, window=window)
                counts += np.bincount(mask.ravel(), minlength=256)
    summary = {
        "background": int(counts[BACKGROUND]),
        "builtup": int(counts[BUILTUP]),
        "ignore": int(counts[IGNORE]),
    }
    if summary["builtup"] == 0:
        log.warning("%s: no label polygon falls on the valid part of %s", label_path, scene_path)
    log.info("%s: %s", out_path, summary)
    return summary


def _burn(polygons: list, shape_hw: tuple[int, int], transform, all_touched: bool) -> np.ndarray:
    if not polygons:
        return np.zeros(shape_hw, dtype=np.uint8)
    return features.rasterize(
        ((p, BUILTUP) for p in polygons),
        out_shape=shape_hw,
        transform=transform,
        fill=BACKGROUND,
        all_touched=all_touched,
        dtype="uint8",
    )
