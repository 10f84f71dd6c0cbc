"""Label polygons: checked loading, and rasterisation onto a scene's grid."""

from __future__ import annotations

import logging
from pathlib import Path

import fiona
import numpy as np
import rasterio
import shapely
from fiona.errors import FionaError
from pyproj import CRS
from rasterio import features, warp
from rasterio._err import CPLE_BaseError  # GDAL and PROJ errors; rasterio exports no base
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
            features = [(i, shape(f.geometry)) for i, f in enumerate(src) if f.geometry]
    except (FionaError, OSError, ValueError) as err:
        raise InputError(path, f"cannot be read as vector data: {err}") from err
    if not crs:
        raise InputError(path, "vector file has no CRS")
    for index, geom in features:
        if np.isnan(shapely.get_coordinates(geom)).any():
            raise InputError(path, f"feature {index} has a NaN coordinate")
    geoms = [geom for _, geom in features]
    check_coordinates_fit(geoms, crs, path)
    polygons = _polygonal(_repaired(geoms, path))
    if not polygons:
        raise InputError(path, "label file holds no polygon (empty)")
    return polygons, crs


def check_coordinates_fit(geoms: list, crs, path: Path) -> None:
    """Coordinates of a geographic CRS are longitudes and latitudes (labels in metres under
    a .prj of degrees are the usual slip)."""
    if not geoms or not CRS.from_user_input(crs).is_geographic:
        return
    west, south, east, north = shapely.total_bounds(np.asarray(geoms, dtype=object))
    if max(abs(west), abs(east)) > 180 or max(abs(south), abs(north)) > 90:
        raise InputError(
            path,
            f"coordinates reach ({west:.0f}, {south:.0f}) to ({east:.0f}, {north:.0f}), which "
            f"cannot be degrees of its CRS {crs}: metres of a projected CRS? fix the .prj",
        )


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


def polygons_on_grid(polygons: list, label_crs, scene, label_path) -> list:
    """The label polygons in the scene's CRS; InputError where PROJ cannot take them there."""
    try:
        projected = reproject_polygons(polygons, label_crs, scene.crs)
    except CPLE_BaseError as err:
        raise InputError(
            label_path, f"polygons cannot be transformed from {label_crs} to {scene.crs}: {err}"
        ) from None
    if not np.isfinite(shapely.total_bounds(np.asarray(projected, dtype=object))).all():
        raise InputError(
            label_path, f"polygons cannot be transformed from {label_crs} to {scene.crs}"
        )
    return projected


def rasterize_mask(
    scene_path: str | Path,
    label_path: str | Path,
    out_path: str | Path,
    all_touched: bool = True,
    trained_on: bool = False,
) -> dict:
    """Mask on the grid of a scene (or a stack): 0 background, 1 built-up, 255 where every
    band is nodata (a scene's bands have data together; a stack's where any acquisition has).

    ``trained_on``: the mask of a training city, refused (InputError, nothing written) when
    no label polygon falls on the scene's valid pixels."""
    polygons, label_crs = load_polygons(label_path)
    with open_raster(scene_path) as scene:
        projected = polygons_on_grid(polygons, label_crs, scene, label_path)
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
            if trained_on and counts[BUILTUP] == 0:
                raise InputError(
                    label_path,
                    f"no label polygon falls on the valid pixels of {scene_path}, a scene of a "
                    "training city: labels of another place, or in another CRS than declared?",
                )
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
