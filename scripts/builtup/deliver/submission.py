"""Polygons of the built-up class from a probability raster, and round trips back to rasters."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import fiona
import numpy as np
import shapely
from affine import Affine
from rasterio import features
from shapely.geometry import mapping, shape

from builtup.core.errors import InputError
from builtup.core.probability import encoding_of, threshold_level, to_levels
from builtup.core.rasters import open_raster, read_window, strip_windows

log = logging.getLogger(__name__)

DRIVERS = {".shp": "ESRI Shapefile", ".gpkg": "GPKG"}
SIDECARS = (".shx", ".dbf", ".prj", ".cpg")


def metres_to_crs_units(crs, path) -> float:
    """How many CRS units make a metre; a geographic CRS (degrees) is refused."""
    if crs.is_geographic:
        raise InputError(
            path,
            f"min_area and simplify are in metres but the raster's CRS ({crs}) is geographic: "
            "set them to 0 or reproject the scenes to a projected CRS (e.g. UTM)",
        )
    return 1.0 / crs.linear_units_factor[1]


def builtup_polygons(
    prob_path: str | Path, threshold: float, min_area: float, simplify: float
) -> tuple[list, object]:
    """Valid polygons of the pixels at or above ``threshold`` (the built-up class only);
    ``min_area`` (m^2) and ``simplify`` (m) in metres whatever the projected CRS's unit.

    The map is read strip by strip: memory holds one strip and the polygons, whatever the
    map's size."""
    with open_raster(prob_path) as src:
        if min_area > 0 or simplify > 0:
            per_metre = metres_to_crs_units(src.crs, prob_path)
            min_area, simplify = min_area * per_metre**2, simplify * per_metre
        polygons = _pixel_polygons(src, threshold)
        to_crs = src.transform
        crs = src.crs
    polygons = [
        shapely.transform(p, lambda xy: np.column_stack(to_crs * (xy[:, 0], xy[:, 1])))
        for p in polygons
    ]
    if simplify > 0:
        polygons = [p.simplify(simplify, preserve_topology=True) for p in polygons]
    polygons = [p if p.is_valid else shapely.make_valid(p) for p in polygons]
    polygons = [p for p in polygons if not p.is_empty and p.area >= min_area]
    return polygons, crs


def _pixel_polygons(src, threshold: float) -> list:
    """Polygons of the built-up pixels in pixel coordinates (integers: exact), strip by strip;
    those that meet a strip border are merged with their continuation in the next strip."""
    final, crossing = [], []
    encoding, level = encoding_of(src), threshold_level(threshold)
    for window in strip_windows(src.height, src.width):
        levels, valid = to_levels(read_window(src, src.name, window, 1), encoding)
        binary = valid & (levels >= level)
        top, bottom = window.row_off, window.row_off + window.height
        shapes = features.shapes(
            binary.view(np.uint8), mask=binary, transform=Affine.translation(0, top)
        )
        for geom, _ in shapes:
            polygon = shape(geom)
            _, low, _, high = polygon.bounds
            inner = (low > top or top == 0) and (high < bottom or bottom == src.height)
            (final if inner else crossing).append(polygon)
    if crossing:
        final += list(shapely.get_parts(shapely.unary_union(crossing)))
    return final


def write_polygons(polygons: list, crs, out_path: str | Path) -> None:
    """One file of polygons with ``DN = 255`` (as UNOSAT labels); shapefile or GeoPackage."""
    out_path = Path(out_path)
    driver = DRIVERS[out_path.suffix.lower()]
    schema = {"geometry": "Polygon", "properties": {"DN": "int"}}
    parts = [part for p in polygons for part in shapely.get_parts(p) if part.geom_type == "Polygon"]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as work:
        target = Path(work) / out_path.name
        with fiona.open(target, "w", driver=driver, crs=crs, schema=schema) as dst:
            dst.writerecords({"geometry": mapping(p), "properties": {"DN": 255}} for p in parts)
        for ext in SIDECARS:
            if target.with_suffix(ext).exists():
                target.with_suffix(ext).replace(out_path.with_suffix(ext))
        target.replace(out_path)  # the main file last: once it is there, the set is complete
    log.info("%s: %d polygons", out_path, len(parts))


def write_submission(city_path, threshold_path, out_path, min_area: float, simplify: float) -> int:
    """The submission file of one city at the experiment's chosen threshold."""
    threshold = json.loads(Path(threshold_path).read_text())["threshold"]
    polygons, crs = builtup_polygons(city_path, threshold, min_area, simplify)
    write_polygons(polygons, crs, out_path)
    return len(polygons)
