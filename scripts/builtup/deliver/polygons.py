"""Polygons of the built-up class from a probability raster, and round trips back to rasters."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import fiona
import numpy as np
import shapely
from rasterio import features
from shapely.geometry import mapping, shape

from builtup.core.errors import InputError
from builtup.core.probability import read_probability
from builtup.core.rasters import open_raster

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
    prob_path: str | Path, threshold: float, min_area: float = 0.0, simplify: float = 0.0
) -> tuple[list, object]:
    """Valid polygons of the pixels at or above ``threshold`` (the built-up class only);
    ``min_area`` (m^2) and ``simplify`` (m) in metres whatever the projected CRS's unit."""
    with open_raster(prob_path) as src:
        if min_area > 0 or simplify > 0:
            per_metre = metres_to_crs_units(src.crs, prob_path)
            min_area, simplify = min_area * per_metre**2, simplify * per_metre
        prob, valid = read_probability(src)
        binary = (valid & (prob >= threshold)).astype(np.uint8)
        polygons = [
            shape(geom)
            for geom, value in features.shapes(
                binary, mask=binary.astype(bool), transform=src.transform
            )
            if value == 1
        ]
        crs = src.crs
    if simplify > 0:
        polygons = [p.simplify(simplify, preserve_topology=True) for p in polygons]
    polygons = [p if p.is_valid else shapely.make_valid(p) for p in polygons]
    polygons = [p for p in polygons if not p.is_empty and p.area >= min_area]
    return polygons, crs


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


def deliver_polygons(city_path, threshold_path, out_path, min_area=0.0, simplify=0.0) -> int:
    """The submission file of one city at the experiment's chosen threshold."""
    threshold = json.loads(Path(threshold_path).read_text())["threshold"]
    polygons, crs = builtup_polygons(city_path, threshold, min_area, simplify)
    write_polygons(polygons, crs, out_path)
    return len(polygons)
