"""The scenes sheet: one row per acquisition (city, scene, vv, vh, split).

:func:`scan_unosat` builds it from a folder in the UNOSAT challenge layout::

    (test)  <City>_2015/<YYYYMMDD>_<tile>/
                s1a_<tile>_{vh|vv}_{ASC|DES}_<yyyymmdd>[t<hhmmss>][_N].tif
    (train) <City>_2015/s1tiling_S1A_IW_GRDH_1SDV_<...>/<tile>/
                s1a_<tile>_{vv|vh}_{ASC|DES}_<...>.tif

``*_BorderMask.tif`` files are skipped. A scene is named ``<date>_<orbit>``;
acquisitions sharing date and orbit (the same time, or files of the same name in
two folders such as ``<date>_<tile>`` and ``<date>_<tile>_1``) get ``_1``, ``_2``...
in time order, then folder order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from builtup.config.schema import check_against_schema
from builtup.config.yamlfile import text_of
from builtup.core.bands import STACK
from builtup.core.errors import InputError

SCENE_FILE = re.compile(
    r"^s1[ab]_(?P<tile>\d{2}[A-Z]{3})_(?P<pol>vv|vh)_(?P<orbit>ASC|DES)_"
    r"(?P<date>\d{8})(?:t(?P<time>\d{6}))?(?:_(?P<dup>\d+))?\.tif$",
    re.IGNORECASE,
)
CITY_FOLDER = re.compile(r"^(?P<name>[A-Za-z]+)_(?P<year>\d{4})$")
COLUMNS = ["city", "scene", "vv", "vh", "split"]


def city_id(tile: str, name: str) -> str:
    return f"{tile}_{name}"


def scan_unosat(root: str | Path, relative_to: str | Path | None = None) -> pd.DataFrame:
    """Scenes sheet of a folder in the UNOSAT layout.

    Paths are written relative to ``relative_to`` (default: the working directory) when
    they lie under it, absolute otherwise.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "data folder does not exist")
    rows = []
    for key, entry in sorted(_acquisitions(root, relative_to).items()):
        for pol in ("vv", "vh"):
            if pol not in entry:
                other = entry["vh" if pol == "vv" else "vv"]
                raise InputError(other, f"{pol.upper()} file of this acquisition is missing")
        city, date, orbit, *_ = key
        rows.append(
            {
                "city": city,
                "scene": f"{date}_{orbit}",
                "vv": entry["vv"],
                "vh": entry["vh"],
                "split": entry["split"],
            }
        )
    if not rows:
        raise InputError(root, "no Sentinel-1 scene in the UNOSAT layout found")
    return _disambiguate(pd.DataFrame(rows, columns=COLUMNS))


def _acquisitions(root: Path, relative_to) -> dict[tuple, dict]:
    """The VV and VH files of each acquisition, keyed by city, date, orbit, time, duplicate
    number and folder."""
    pairs: dict[tuple, dict] = {}
    for path in sorted(root.rglob("*.tif")):
        if path.stem.lower().endswith("bordermask"):
            continue
        match = SCENE_FILE.match(path.name)
        city_dir = next(
            (p for p in path.relative_to(root).parents if CITY_FOLDER.match(p.name)), None
        )
        if match is None or city_dir is None:
            continue
        city = city_id(match["tile"].upper(), CITY_FOLDER.match(city_dir.name)["name"])
        split = "train" if "s1tiling" in str(path.relative_to(root)).lower() else "test"
        key = (
            city,
            match["date"],
            match["orbit"].upper(),
            match["time"] or "",
            match["dup"] or "",
            str(path.parent.relative_to(root)),
        )
        entry = pairs.setdefault(key, {"city": city, "split": split})
        entry[match["pol"].lower()] = _display(path, relative_to)
    return pairs


def _display(path: Path, relative_to) -> str:
    path = Path(path).resolve()
    base = Path.cwd() if relative_to is None else Path(relative_to).resolve()
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _disambiguate(sheet: pd.DataFrame) -> pd.DataFrame:
    """Suffix ``_1``, ``_2``... to repeated (city, scene) names, keeping the first plain."""
    rank = sheet.groupby(["city", "scene"]).cumcount()
    sheet["scene"] = [
        s if r == 0 else f"{s}_{r}" for s, r in zip(sheet["scene"], rank, strict=True)
    ]
    return sheet


def read_sheet(path: str | Path) -> pd.DataFrame:
    """The scenes sheet, one row per acquisition, indexed by its line in the file; each row
    checked against the schema; InputError naming the file and the line at fault."""
    path = Path(path)
    lines = text_of(path, "scenes sheet").splitlines()
    if not lines or not lines[0].strip():
        raise InputError(path, f"scenes sheet is empty: it needs a header ({', '.join(COLUMNS)})")
    header = lines[0].split("\t")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(path, f"scenes sheet lacks column(s) {', '.join(missing)}")
    rows = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise InputError(
                path,
                f"line {number}: {len(fields)} tab-separated fields, the header has {len(header)}",
            )
        rows[number] = dict(zip(header, fields, strict=True))
        try:
            check_against_schema(rows[number], "scenes.schema.yaml", path)
        except InputError as err:
            raise InputError(path, f"line {number}: {err.fault}") from None
    sheet = pd.DataFrame.from_dict(rows, orient="index", columns=header)
    check_names(sheet, path)
    return sheet


def check_names(sheet: pd.DataFrame, path: Path) -> None:
    """Each (city, scene) once, no scene named like the stack, and each city in one split."""
    duplicated = sheet[sheet.duplicated(["city", "scene"], keep=False)]
    if len(duplicated):
        first = duplicated.iloc[0]
        raise InputError(path, f"scene {first['city']}/{first['scene']} is listed twice")
    reserved = sheet[sheet["scene"] == STACK]
    if len(reserved):
        raise InputError(
            path,
            f"scene {reserved.iloc[0]['city']}/{STACK}: the name {STACK!r} is reserved for "
            "the city's temporal stack; rename the scene",
        )
    splits = sheet.groupby("city")["split"].nunique()
    if (splits > 1).any():
        city = splits[splits > 1].index[0]
        lines = sheet.index[(sheet["city"] == city) & (sheet["split"] == "test")]
        raise InputError(
            path,
            f"line {lines[0]}: city {city} has both train and test rows; a city is in one "
            "split (its acquisitions share one stack, one label file and one fold)",
        )


def check_cities(sheet: pd.DataFrame, cities: list[str], labels: dict, sheet_path) -> None:
    """Every configured city has scenes; every training city has labels."""
    for city in cities:
        rows = sheet[sheet["city"] == city]
        if rows.empty:
            raise InputError(
                sheet_path, f"city {city} is in the config but has no scene in the sheet"
            )
        if (rows["split"] == "train").any() and city not in labels:
            raise InputError(
                sheet_path, f"training city {city} has no label file in config 'labels'"
            )


def check_inputs_exist(
    sheet: pd.DataFrame, labels: dict, made_under: Path | None, sheet_path, config_path
) -> None:
    """Every raw scene of the sheet and every label file exists, unless the workflow makes
    it (``made_under``: the demo's folder)."""

    def missing(path: str) -> bool:
        made = made_under is not None and Path(path).is_relative_to(made_under)
        return not made and not Path(path).exists()

    for line, row in sheet.iterrows():
        for pol in ("vv", "vh"):
            if missing(row[pol]):
                raise InputError(sheet_path, f"line {line}: {pol} file {row[pol]} does not exist")
    for city in sorted(set(sheet["city"]) & set(labels)):
        if missing(labels[city]):
            raise InputError(config_path, f"labels.{city}: file {labels[city]} does not exist")
