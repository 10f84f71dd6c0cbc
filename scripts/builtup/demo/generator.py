"""A synthetic data set shaped like the UNOSAT challenge's, deterministic by seed.

Every city is a ground layout in map coordinates (UTM 38N): urban cores made
of street-grid blocks, bare desert, agricultural parcels, a river and a lake,
rocky slopes, roads, an airfield and isolated industrial objects. Each
acquisition samples that layout on its own grid, adds its own look geometry
(ascending looks east, descending west), speckle, calibration offset and
orthorectification nodata wedge, and is written as two single-band float32
GeoTIFFs (linear sigma0, nodata 0) named as the challenge named them.

Mean backscatter per class, C band, dB (VV / VH), chosen near published
Sentinel-1 values for arid Middle-East land cover:

==========================  ===============  ===============
class                       VV               VH
==========================  ===============  ===============
calm water (river, lake)    -23              -30
smooth desert, sand         -17 +- 2.5       -25 +- 2
agricultural parcels        -13 .. -7        -20 .. -14
built-up, building pixels   -2 .. +7 *       -11 .. -6 *
built-up, courtyards        -11              -18
streets, roads, runways     -21              -28
rocky slopes                -10 +- 8 **      -17 +- 8 **
industrial objects          +6               -6
==========================  ===============  ===============

\\* double bounce: up to +7 dB when facades face the radar (cardinal effect),
so ascending and descending looks differ on rotated street grids.
\\*\\* foreshortening: slopes facing the sensor brighten, those facing away darken;
the sign flips between ascending and descending: bright rocks are the
confounder a backscatter threshold mistakes for built-up, as are bright
industrial objects (not labelled), and dark roads and runways inside cities.

Speckle is multiplicative, gamma distributed with 4.4 looks (GRD IW). Labels
are the blocks of the urban cores, merged into district polygons (blocks
closer than a street width aggregate), with about 7% of blocks omitted, in
EPSG:4326 with ``DN = 255`` as UNOSAT shipped them.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import fiona
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from shapely import affinity
from shapely.geometry import box, mapping

from builtup.core.rasters import BLOCK, atomic_path, strip_windows

log = logging.getLogger(__name__)

LOOKS = 4.4
PIXEL = 10.0
CRS = "EPSG:32638"
FULL_SIZE = 10980  # px: a Sentinel-2 MGRS tile at 10 m, as the UNOSAT scenes
LOOK_AZIMUTH = {"ASC": 78.0, "DES": 282.0}  # degrees from north; right-looking sensor
TIMES = {"ASC": "150512", "DES": "025534"}


@dataclass(frozen=True)
class City:
    name: str
    tile: str
    lon: float
    lat: float
    split: str

    @property
    def id(self) -> str:
        return f"{self.tile}_{self.name}"


TRAIN_CITIES = (
    City("Mosul", "38SLF", 43.13, 36.34, "train"),
    City("Souleimaniye", "38SNE", 45.43, 35.56, "train"),
    City("Najaf", "38SMA", 44.33, 32.00, "train"),
    City("Nasiryah", "38RPV", 46.26, 31.05, "train"),
)
TEST_CITIES = (
    City("Samawah", "38RNV", 45.28, 31.31, "test"),
    City("Tikrit", "38SLD", 43.68, 34.60, "test"),
    City("Bagdad", "38SMB", 44.37, 33.31, "test"),
    City("Kirkouk", "38SME", 44.39, 35.47, "test"),
)
SHIFTED_GRID_CITY = "Souleimaniye"  # its second acquisition: origin shifted, 10.0027 m pixels
SAME_DATE_CITY = "Tikrit"  # its second acquisition shares date and orbit with the first
BORDER_MASK_CITIES = ("Mosul", "Samawah")
OUTLIER_CITY = "Nasiryah"  # one VV scene with the outliers seen in the real data


@dataclass(frozen=True)
class Acquisition:
    city: City
    index: int
    orbit: str
    day: date
    suffix: str
    transform: Affine
    size: int

    @property
    def stamp(self) -> str:
        return self.day.strftime("%Y%m%d")

    def relative_paths(self) -> dict[str, Path]:
        """Paths of VV and VH inside the data root, in the challenge's layout."""
        tile, stamp = self.city.tile, self.stamp
        folder = Path(f"{self.city.name}_2015")
        if self.city.split == "train":
            start = f"{stamp}T{TIMES[self.orbit]}"
            stop = f"{stamp}T{TIMES[self.orbit][:4]}59"
            product = f"s1tiling_S1A_IW_GRDH_1SDV_{start}_{stop}_0{4000 + self.index}"
            folder = folder / product / tile
            name = f"s1a_{tile}_{{pol}}_{self.orbit}_{stamp}t{TIMES[self.orbit]}{self.suffix}.tif"
        else:
            folder = folder / f"{stamp}_{tile}"
            name = f"s1a_{tile}_{{pol}}_{self.orbit}_{stamp}{self.suffix}.tif"
        return {pol: folder / name.format(pol=pol) for pol in ("vv", "vh")}


@dataclass
class Layout:
    """Ground truth of one city in local metres around the scene centre (x east, y north)."""

    half: float
    cores: list[dict] = field(default_factory=list)
    river: dict = field(default_factory=dict)
    lake: dict = field(default_factory=dict)
    roads: list[dict] = field(default_factory=list)
    airfield: dict = field(default_factory=dict)
    salt: int = 0


def city_centre(city: City) -> tuple[float, float]:
    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(city.lon, city.lat)
    return round(x / PIXEL) * PIXEL, round(y / PIXEL) * PIXEL


def build_layout(seed: int, city_index: int, size: int) -> Layout:
    rng = np.random.default_rng([seed, city_index, 7])
    half = size * PIXEL / 2
    layout = Layout(half=half, salt=int(rng.integers(1, 2**31)))
    for _ in range(int(rng.integers(2, 4))):
        layout.cores.append(
            {
                "x": rng.uniform(-0.3, 0.3) * half,
                "y": rng.uniform(-0.3, 0.3) * half,
                "radius": rng.uniform(0.18, 0.35) * half,
                "angle": float(rng.choice([0.0, rng.uniform(-40, 40)])),
                "block": rng.uniform(70, 110),
                "street": rng.uniform(12, 18),
            }
        )
    layout.river = {
        "angle": rng.uniform(0, 180),
        "offset": rng.uniform(0.45, 0.7) * half * rng.choice([-1, 1]),
        "amplitude": rng.uniform(0.05, 0.12) * half,
        "wavelength": rng.uniform(0.6, 1.2) * half,
        "width": rng.uniform(100, 220),
    }
    layout.lake = {
        "x": rng.uniform(-0.8, 0.8) * half,
        "y": rng.uniform(-0.8, 0.8) * half,
        "a": rng.uniform(0.04, 0.09) * half,
        "b": rng.uniform(0.02, 0.05) * half,
    }
    layout.roads = [
        {
            "angle": rng.uniform(0, 180),
            "offset": rng.uniform(-0.3, 0.3) * half,
            "width": rng.uniform(15, 25),
        }
        for _ in range(3)
    ]
    layout.airfield = {
        "x": rng.uniform(0.55, 0.75) * half * rng.choice([-1, 1]),
        "y": rng.uniform(-0.6, 0.6) * half,
        "angle": rng.uniform(0, 180),
        "length": min(2500.0, 0.5 * half),
    }
    return layout


# -- deterministic fields of map coordinates ---------------------------------------------------


def _hash01(i: np.ndarray, j: np.ndarray, salt: int) -> np.ndarray:
    """A uniform [0, 1) value per integer cell (i, j), the same in every acquisition."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ np.int64(salt)
    h = (h ^ (h >> 13)) * np.int64(1274126177)
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float32) / np.float32(0x1000000)


def _smooth(x: np.ndarray, y: np.ndarray, salt: int, scale: float) -> np.ndarray:
    """A smooth field in [-1, 1] with features about ``scale`` metres across."""
    rng = np.random.default_rng(salt)
    total = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.float32)
    for _ in range(4):
        theta = rng.uniform(0, np.pi)
        k = 2 * np.pi / (scale * rng.uniform(0.6, 1.6))
        total += np.sin(k * (np.cos(theta) * x + np.sin(theta) * y) + rng.uniform(0, 2 * np.pi))
    return total / 4


def _rotate(x, y, angle_deg: float, x0: float = 0.0, y0: float = 0.0):
    a = math.radians(angle_deg)
    dx, dy = x - x0, y - y0
    return np.cos(a) * dx + np.sin(a) * dy, -np.sin(a) * dx + np.cos(a) * dy


def core_blocks(core: dict, salt: int, i, j):
    """Whether block (i, j) of a core is built, and whether the label kept it."""
    block = core["block"]
    distance = np.hypot((i + 0.5) * block, (j + 0.5) * block)
    edge = core["radius"] * (1 + 0.3 * (2 * _hash01(i, j, salt + 1) - 1))
    built = (distance < edge) & (_hash01(i, j, salt + 2) > 0.08)
    labelled = built & (_hash01(i, j, salt + 3) > 0.07)
    return built, labelled


def render_db(
    layout: Layout, x: np.ndarray, y: np.ndarray, orbit: str
) -> tuple[np.ndarray, np.ndarray]:
    """Mean VV and VH backscatter in dB at local coordinates (x, y) for one look: land cover
    painted layer by layer, each layer over the ones before."""
    vv, vh, farmland = _open_land(layout, x, y)
    vv, vh = _rocky_slopes(layout, x, y, orbit, farmland, vv, vh)
    vv, vh = _water(layout, x, y, vv, vh)
    vv, vh = _built_up(layout, x, y, orbit, vv, vh)
    vv, vh = _dark_surfaces(layout, x, y, vv, vh)
    vv, vh = _industrial_objects(layout, x, y, vv, vh)
    return vv.astype(np.float32), vh.astype(np.float32)


def _open_land(layout: Layout, x, y):
    """Desert, and agricultural parcels on a rotated grid of 200 x 120 m fields."""
    salt = layout.salt
    vv = -17 + 2.5 * _smooth(x, y, salt, 3000)
    vh = -25 + 2.0 * _smooth(x, y, salt + 1, 2500)
    u, v = _rotate(x, y, 20)
    pi, pj = np.floor(u / 200), np.floor(v / 120)
    farmland = (_smooth(x, y, salt + 2, 6000) > 0.25) & (_hash01(pi, pj, salt + 3) > 0.15)
    level = _hash01(pi, pj, salt + 4)
    vv = np.where(farmland, -13 + 6 * level, vv)
    vh = np.where(farmland, -20 + 6 * level + (_hash01(pi, pj, salt + 5) - 0.5), vh)
    return vv, vh, farmland


def _rocky_slopes(layout: Layout, x, y, orbit: str, farmland, vv, vh):
    """Foreshortening flips the slopes' sign between ascending and descending looks."""
    salt = layout.salt
    rocks = (_smooth(x, y, salt + 6, 8000) > 0.45) & ~farmland
    facing = sum(
        (_smooth(x, y, salt + 7 + k, scale) - _smooth(x - 30, y, salt + 7 + k, scale))
        * scale
        / (4 * math.pi * 30)
        for k, scale in enumerate((900, 350))
    )
    facing = np.clip(facing if orbit == "ASC" else -facing, -1, 1)
    vv = np.where(rocks, -10 + 8 * facing, vv)
    vh = np.where(rocks, -17 + 8 * facing, vh)
    return vv, vh


def _water(layout: Layout, x, y, vv, vh):
    """The river and the lake."""
    r = layout.river
    ru, rv = _rotate(x, y, r["angle"])
    centre = r["offset"] + r["amplitude"] * np.sin(2 * np.pi * ru / r["wavelength"])
    lk = layout.lake
    water = (np.abs(rv - centre) < r["width"] / 2) | (
        ((x - lk["x"]) / lk["a"]) ** 2 + ((y - lk["y"]) / lk["b"]) ** 2 < 1
    )
    return np.where(water, -23, vv), np.where(water, -30, vh)


def _built_up(layout: Layout, x, y, orbit: str, vv, vh):
    """The blocks of every core: buildings (bright when their walls face the look),
    courtyards, streets."""
    salt, look = layout.salt, LOOK_AZIMUTH[orbit]
    for core in layout.cores:
        cu, cv = _rotate(x, y, core["angle"], core["x"], core["y"])
        block = core["block"]
        i, j = np.floor(cu / block), np.floor(cv / block)
        built, _ = core_blocks(core, salt, i, j)
        street = (np.mod(cu, block) < core["street"]) | (np.mod(cv, block) < core["street"])
        buildings = built & ~street & (_hash01(np.floor(x / 10), np.floor(y / 10), salt + 8) > 0.35)
        delta = math.radians(90 - core["angle"] - look)
        cardinal = 7 * math.cos(2 * delta) ** 8
        brightness = -2 + cardinal + 3 * _hash01(i, j, salt + 9)
        vv = np.where(built & street, -15, vv)
        vh = np.where(built & street, -22, vh)
        vv = np.where(built & ~street, np.where(buildings, brightness, -11), vv)
        vh = np.where(built & ~street, np.where(buildings, brightness - 9, -18), vh)
    return vv, vh


def _dark_surfaces(layout: Layout, x, y, vv, vh):
    """Roads and the airfield: dark lines a threshold would call open land, even in town."""
    dark = np.zeros(vv.shape, dtype=bool)
    for road in layout.roads:
        _, rv = _rotate(x, y, road["angle"])
        dark |= np.abs(rv - road["offset"]) < road["width"] / 2
    af = layout.airfield
    au, av = _rotate(x, y, af["angle"], af["x"], af["y"])
    dark |= (np.abs(au) < af["length"] / 2) & (np.abs(av) < 30)
    dark |= (np.abs(au) < af["length"] / 4) & (np.abs(av - 150) < 60)
    return np.where(dark, -21, vv), np.where(dark, -28, vh)


def _industrial_objects(layout: Layout, x, y, vv, vh):
    """Isolated tanks and sheds outside the cores: bright, not built-up."""
    ci, cj = np.floor(x / 400), np.floor(y / 400)
    ox, oy = x - (ci + 0.5) * 400, y - (cj + 0.5) * 400
    industrial = (_hash01(ci, cj, layout.salt + 10) < 0.05) & (np.abs(ox) < 20) & (np.abs(oy) < 20)
    return np.where(industrial, 6, vv), np.where(industrial, -6, vh)


LABEL_STYLES = ("districts", "blocks")


def label_polygons(layout: Layout, style: str = "districts") -> list:
    """Label polygons (local metres) of the labelled blocks: merged into districts with their
    streets (``districts``, as UNOSAT drew them), or one polygon per block without its
    streets, merged only where blocks touch (``blocks``)."""
    if style not in LABEL_STYLES:
        raise ValueError(f"label style must be one of {', '.join(LABEL_STYLES)}, not {style!r}")
    polygons = []
    for core in layout.cores:
        block, street = core["block"], core["street"]
        reach = int(core["radius"] * 1.3 / block) + 1
        i, j = np.meshgrid(
            np.arange(-reach, reach + 1), np.arange(-reach, reach + 1), indexing="ij"
        )
        _, labelled = core_blocks(core, layout.salt, i.astype(float), j.astype(float))
        boxes = [
            box(a * block + street, b * block + street, (a + 1) * block, (b + 1) * block)
            for a, b in zip(i[labelled], j[labelled], strict=True)
        ]
        if style == "districts":
            grown = [b.buffer(street * 0.6, join_style="mitre") for b in boxes]
            shape = shapely.union_all(grown).buffer(-street * 0.6, join_style="mitre")
        else:
            shape = shapely.union_all(boxes)
        shape = affinity.rotate(shape, core["angle"], origin=(0, 0))
        polygons.append(affinity.translate(shape, core["x"], core["y"]))
    merged = shapely.union_all(polygons)
    return [p for p in shapely.get_parts(merged) if p.area > 0]


# -- acquisitions and files -------------------------------------------------------------------


Counts = int | tuple[int, int]  # acquisitions per city: a number, or a (low, high) range
REPEAT_CHANCE = 0.25  # in a city of drawn count: chance that an acquisition repeats a date


def acquisition_count(counts: Counts, seed: int, city_index: int) -> int:
    """A city's number of acquisitions: the number given, or drawn from the range by seed."""
    if isinstance(counts, int):
        return counts
    low, high = counts
    return int(np.random.default_rng([seed, city_index, 3]).integers(low, high + 1))


def acquisitions(
    city: City, city_index: int, counts: Counts, size: int, seed: int = 0
) -> list[Acquisition]:
    """A city's acquisitions, alternating descending and ascending looks 12 days apart. With
    a range of counts, each acquisition after the first may repeat the previous date and
    orbit (another product of the same pass), as the challenge's data had."""
    cx, cy = city_centre(city)
    half = size * PIXEL / 2
    repeats = np.random.default_rng([seed, city_index, 4])
    result = []
    for k in range(acquisition_count(counts, seed, city_index)):
        orbit = "DES" if k % 2 == 0 else "ASC"
        day = date(2015, 1, 8) + timedelta(days=12 * k + 6 * city_index)
        suffix = ""
        same_date = city.name == SAME_DATE_CITY and k == 1
        if not isinstance(counts, int) and k > 0 and not result[-1].suffix:
            same_date = same_date or repeats.random() < REPEAT_CHANCE
        if same_date:
            orbit, day, suffix = result[-1].orbit, result[-1].day, "_1"
        transform = Affine(PIXEL, 0, cx - half, 0, -PIXEL, cy + half)
        if city.name == SHIFTED_GRID_CITY and k == 1:
            transform = Affine(10.0027, 0, cx - half + 2.16, 0, -10.0027, cy + half - 1.84)
        result.append(Acquisition(city, k, orbit, day, suffix, transform, size))
    return result


def write_acquisition(
    acq: Acquisition, layout: Layout, root: Path, seed: int, city_index: int
) -> dict:
    """Write the VV and VH files of one acquisition strip by strip; return their paths."""
    paths = {pol: root / rel for pol, rel in acq.relative_paths().items()}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": acq.size,
        "height": acq.size,
        "count": 1,
        "dtype": "float32",
        "crs": CRS,
        "transform": acq.transform,
        "nodata": 0.0,
    }
    rng_acq = np.random.default_rng([seed, city_index, acq.index, 1])
    gain_db = rng_acq.uniform(-0.5, 0.5)
    wedge = _wedge(rng_acq, acq)
    cx, cy = city_centre(acq.city)
    with (
        atomic_path(paths["vv"]) as vv_tmp,
        atomic_path(paths["vh"]) as vh_tmp,
        rasterio.open(vv_tmp, "w", **profile) as vv_dst,
        rasterio.open(vh_tmp, "w", **profile) as vh_dst,
    ):
        for n, window in enumerate(strip_windows(acq.size, acq.size, BLOCK)):
            rows = np.arange(window.row_off, window.row_off + window.height) + 0.5
            cols = np.arange(acq.size) + 0.5
            gx = acq.transform.c + acq.transform.a * cols - cx
            gy = acq.transform.f + acq.transform.e * rows - cy
            x, y = np.meshgrid(gx.astype(np.float32), gy.astype(np.float32))
            vv_db, vh_db = render_db(layout, x, y, acq.orbit)
            rng = np.random.default_rng([seed, city_index, acq.index, 2, n])
            vv = _linear(vv_db + gain_db) * rng.gamma(LOOKS, 1 / LOOKS, vv_db.shape).astype(
                np.float32
            )
            vh = _linear(vh_db + gain_db) * rng.gamma(LOOKS, 1 / LOOKS, vh_db.shape).astype(
                np.float32
            )
            outside = wedge(x, y)
            vv[outside] = 0.0
            vh[outside] = 0.0
            if acq.city.name == OUTLIER_CITY and acq.index == 1 and n == 0:
                vv[3, 5], vv[7, 9] = -66.7, 12941.0
            vv_dst.write(vv, 1, window=window)
            vh_dst.write(vh, 1, window=window)
    return {pol: str(p) for pol, p in paths.items()}


def _linear(db: np.ndarray) -> np.ndarray:
    return np.power(np.float32(10), db / np.float32(10)).astype(np.float32)


def _wedge(rng, acq: Acquisition):
    """Nodata beyond the swath edge: a tilted line near the east (ASC) or west (DES) border."""
    half = acq.size * PIXEL / 2
    edge = rng.uniform(0.75, 0.92) * half
    tilt = math.tan(math.radians(rng.uniform(8, 14)))
    side = 1 if acq.orbit == "ASC" else -1
    return lambda x, y: side * x > edge + tilt * y


def write_labels(layout: Layout, city: City, path: Path, style: str = "districts") -> None:
    cx, cy = city_centre(city)
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    schema = {"geometry": "Polygon", "properties": {"DN": "int"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with fiona.open(path, "w", driver="ESRI Shapefile", crs="EPSG:4326", schema=schema) as dst:
        for polygon in label_polygons(layout, style):
            utm = affinity.translate(polygon, cx, cy)
            lonlat = shapely.transform(utm, to_lonlat.transform, interleaved=False)
            dst.write({"geometry": mapping(lonlat), "properties": {"DN": 255}})


def write_border_mask(scene_vv: Path) -> None:
    with rasterio.open(scene_vv) as src:
        profile = {**src.profile, "dtype": "uint8", "nodata": None}
        with rasterio.open(
            scene_vv.with_name(scene_vv.stem + "_BorderMask.tif"), "w", **profile
        ) as dst:
            for window in strip_windows(src.height, src.width):
                dst.write((src.read(1, window=window) != 0).astype("uint8"), 1, window=window)


def demo_cities(train: int, test: int) -> list[City]:
    return list(TRAIN_CITIES[:train]) + list(TEST_CITIES[:test])


def label_path(root: str | Path, city: City) -> Path:
    return Path(root) / f"{city.name}_2015" / f"{city.id}.shp"


def generate(
    root: str | Path,
    *,
    seed: int = 0,
    size: int = 1024,
    train: int = 4,
    test: int = 2,
    acquisitions_per_city: Counts = 2,
    test_acquisitions: Counts | None = None,
    label_style: str = "districts",
) -> list[dict]:
    """Write the whole demo data set under ``root``; return one record per acquisition.
    ``acquisitions_per_city``: a number or a (low, high) range drawn per city;
    ``test_acquisitions``: the test cities' (default: the same); ``label_style``: see
    :func:`label_polygons`."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".part", dir=root.parent))
    try:
        records = _write_cities(
            staging,
            seed,
            size,
            demo_cities(train, test),
            acquisitions_per_city,
            test_acquisitions,
            label_style,
        )
        moved = _moved_into(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [{**r, "vv": moved[str(r["vv"])], "vh": moved[str(r["vh"])]} for r in records]


def _moved_into(staging: Path, root: Path) -> dict[str, str]:
    """Every file written under ``staging`` moved to the same place under ``root`` (replacing
    an earlier one), once all are written: a failed run leaves nothing that looks finished."""
    moved = {}
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = root / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        moved[str(path)] = str(target)
    return moved


def _write_cities(
    root: Path,
    seed: int,
    size: int,
    cities: list[City],
    acquisitions_per_city: Counts,
    test_acquisitions: Counts | None,
    label_style: str,
) -> list[dict]:
    """Labels and acquisitions of each city under ``root``, one record per acquisition."""
    records = []
    for city in cities:
        city_index = (TRAIN_CITIES + TEST_CITIES).index(city)
        layout = build_layout(seed, city_index, size)
        write_labels(layout, city, label_path(root, city), label_style)
        counts = acquisitions_per_city
        if city.split == "test" and test_acquisitions is not None:
            counts = test_acquisitions
        for acq in acquisitions(city, city_index, counts, size, seed):
            paths = write_acquisition(acq, layout, root, seed, city_index)
            if city.name in BORDER_MASK_CITIES and acq.index == 0:
                write_border_mask(Path(paths["vv"]))
            records.append({"city": city.id, "split": city.split, **paths})
            log.info(
                "wrote %s %s %s",
                city.id,
                acq.stamp + "_" + acq.orbit + acq.suffix,
                Path(paths["vv"]).relative_to(root),
            )
    return records
