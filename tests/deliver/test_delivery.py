"""Scene prediction, city aggregation, polygons and metrics on synthetic rasters."""

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine

from builtup.core.errors import InputError
from builtup.core.probability import PROB_NODATA, PROB_SCALE
from builtup.deliver.submission import builtup_polygons, write_polygons
from builtup.deliver.threshold import best_level, confusion_at
from builtup.prepare.masks import rasterize_mask

from conftest import ORIGIN, write_raster


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src.overviews(1)


def test_polygons_hold_the_built_up_class_only(tmp_path):
    data = np.zeros((200, 200), np.uint8)
    data[20:60, 30:90] = 200
    data[120:125, 120:125] = 250  # 25 px = 2500 m^2
    data[:, :5] = PROB_NODATA
    prob = write_raster(tmp_path / "p.tif", data, dtype="uint8", nodata=PROB_NODATA)
    polygons, crs = builtup_polygons(prob, 0.5, 0, 0)
    assert len(polygons) == 2 and all(p.is_valid for p in polygons)
    assert sorted(p.area for p in polygons) == [2500.0, 40 * 60 * 100.0]
    assert len(builtup_polygons(prob, 0.5, 3000, 0)[0]) == 1
    out = tmp_path / "sub" / "38RNV_Samawah.shp"
    write_polygons(polygons, crs, out)
    assert out.with_suffix(".prj").exists() and not list(out.parent.glob("tmp*"))
    import fiona

    with fiona.open(out) as src:
        assert len(src) == 2 and {f.properties["DN"] for f in src} == {255}
    write_polygons(polygons, crs, tmp_path / "x.gpkg")
    with fiona.open(tmp_path / "x.gpkg") as src:
        assert len(src) == 2


def test_polygonise_rasterise_round_trip_on_the_real_label(tmp_path, shared_sample):
    with rasterio.open(shared_sample / "Spain_7370579_LabelHand.tif") as src:
        label, transform, crs = src.read(1), src.transform, src.crs
    prob = np.where(label < 0, PROB_NODATA, np.where(label == 1, PROB_SCALE, 0)).astype(np.uint8)
    prob_path = write_raster(
        tmp_path / "p.tif", prob, transform=transform, crs=crs, dtype="uint8", nodata=PROB_NODATA
    )
    polygons, crs_out = builtup_polygons(prob_path, 0.5, 0, 0)
    write_polygons(polygons, crs_out, tmp_path / "water.shp")
    scene = write_raster(
        tmp_path / "s.tif",
        np.where(label >= 0, 1.0, 0.0)[None].repeat(3, 0),
        transform=transform,
        crs=crs,
    )
    rasterize_mask(scene, tmp_path / "water.shp", tmp_path / "m.tif", all_touched=False)
    mask = read(tmp_path / "m.tif")[0]
    valid = label >= 0
    truth, back = label[valid] == 1, mask[valid] == 1
    assert (truth & back).sum() / (truth | back).sum() > 0.999


def test_threshold_tuning_from_histograms():
    hist = np.zeros((2, 255), np.int64)
    hist[0, :100] = 10  # background below level 100
    hist[1, 150:] = 10  # built-up at 150 and above
    level, f1 = best_level(hist)
    assert 100 <= level <= 150 and f1 == 1.0
    assert confusion_at(hist, 150).tolist() == [[1000, 0], [0, 1050]]


def test_min_area_and_simplify_are_metres_whatever_the_crs(tmp_path):
    data = np.zeros((100, 100), np.uint8)
    data[10:15, 10:15] = 250  # 25 px
    feet = Affine(10 / 0.3048, 0, 1_300_000, 0, -10 / 0.3048, 12_000_000)  # 10 m pixels in ft
    prob = write_raster(
        tmp_path / "ft.tif", data, transform=feet, crs="EPSG:2263", dtype="uint8", nodata=255
    )
    assert len(builtup_polygons(prob, 0.5, 2400, 0)[0]) == 1  # 2500 m^2 kept
    assert len(builtup_polygons(prob, 0.5, 2600, 0)[0]) == 0
    degrees = Affine(1e-4, 0, 44.0, 0, -1e-4, 36.0)
    geographic = write_raster(
        tmp_path / "deg.tif", data, transform=degrees, crs="EPSG:4326", dtype="uint8", nodata=255
    )
    assert len(builtup_polygons(geographic, 0.5, 0, 0)[0]) == 1
    with pytest.raises(InputError, match="in metres but the raster's CRS .* is geographic"):
        builtup_polygons(geographic, 0.5, 100, 0)


def test_quicklook_shows_the_delivery_threshold_and_the_tables_f1(tmp_path, monkeypatch):
    import json

    from builtup.deliver import quicklook as figures

    image = np.full((3, 64, 64), 0.1, np.float32)
    raster = write_raster(tmp_path / "r.tif", image)
    prob = np.full((64, 64), round(0.6 * PROB_SCALE), np.uint8)
    prob[:, 32:] = round(0.9 * PROB_SCALE)
    folder = tmp_path / "predictions" / "38SLD_Tikrit"
    prediction = write_raster(folder / "20150207_DES.tif", prob, dtype="uint8", nodata=255)
    mask = write_raster(tmp_path / "m.tif", np.ones((64, 64), np.uint8), dtype="uint8")
    threshold = tmp_path / "t.json"
    threshold.write_text(json.dumps({"threshold": 0.8, "out_of_fold": {"38SMA_Najaf": 0.3}}))
    table = tmp_path / "scenes.tsv"
    table.write_text("city\tscene\tsplit\tf1\n38SLD_Tikrit\t20150207_DES\ttest\t0.4321\n")
    shown = {}

    def capture(axes, gray, pred, label, title):
        shown.update(pred=pred, title=title)

    monkeypatch.setattr(figures, "sample_row", capture)
    out = tmp_path / "q.png"
    figures.plot_quicklook(raster, prediction, threshold, out, mask, table)
    assert out.stat().st_size > 0
    assert shown["pred"][:, :32].sum() == 0 and shown["pred"][:, 32:].all()
    assert "F1 0.432" in shown["title"] and "threshold 0.800" in shown["title"]


def test_delivery_threshold_defaults_to_the_out_of_fold_one():
    import yaml

    from conftest import REPO

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    delivery = schema["properties"]["delivery"]["properties"]
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert delivery["threshold"]["default"] == config["delivery"]["threshold"] == "oof"
    assert delivery["threshold"]["default"] == "oof"
    assert schema["properties"]["evaluation"]["properties"]["all_touched"]["default"] is False
    assert config["evaluation"]["all_touched"] is False


def city_map(tmp_path, name, boundary):
    """A city whose built-up half has probability ``boundary`` + 0.1 and background below."""
    prob = np.full((40, 40), round((boundary - 0.2) * PROB_SCALE), np.uint8)
    prob[:, 20:] = round((boundary + 0.1) * PROB_SCALE)
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 1
    return (
        write_raster(tmp_path / f"{name}.tif", prob, dtype="uint8", nodata=255),
        write_raster(tmp_path / f"{name}_mask.tif", mask, dtype="uint8", nodata=255),
    )


def test_each_training_city_is_scored_at_the_threshold_of_the_others(tmp_path):
    """The delivery threshold is tuned on every training city; a training city's own
    out-of-fold figure uses the one tuned on the other cities only."""
    import json

    from builtup.deliver.threshold import (
        best_probability_threshold,
        choose_threshold,
        probability_histograms,
    )
    from builtup.evaluate.experiment import evaluate_experiment

    maps = {name: city_map(tmp_path, name, b) for name, b in (("A", 0.3), ("B", 0.6), ("C", 0.6))}
    cities = sorted(maps)
    out = tmp_path / "threshold.json"
    result = choose_threshold(
        [maps[c][0] for c in cities], [maps[c][1] for c in cities], cities, "oof", out
    )
    oof = result["out_of_fold"]
    hist = {c: probability_histograms(*maps[c]) for c in cities}
    for c in cities:
        others = sum(h for other, h in hist.items() if other != c)
        assert oof[c] == best_probability_threshold(others)[0]
    assert 0.4 < oof["A"] <= 0.7  # from B and C: A's built-up half (0.4) is missed
    assert result["threshold"] == best_probability_threshold(sum(hist.values()))[0]
    baseline = tmp_path / "baseline.json"
    baseline.write_text("{}")
    summary = evaluate_experiment(
        [],
        [
            {"city": c, "split": "train", "probability": maps[c][0], "mask": maps[c][1]}
            for c in cities
        ],
        out,
        baseline,
        tmp_path / "scenes.tsv",
        tmp_path / "cities.tsv",
        tmp_path / "summary.json",
    )
    table = pd.read_csv(tmp_path / "cities.tsv", sep="\t").set_index("city")
    assert table.loc["A", "f1"] == 0 and table.loc["A", "threshold"] == pytest.approx(
        oof["A"], abs=1e-4
    )
    assert table.loc["B", "f1"] < 1 and table.loc["C", "f1"] < 1  # ties broken low: A's 0.3
    assert summary["thresholds_out_of_fold"] == oof
    assert "other training cities" in summary["tuned"]["train_out_of_fold"]
    assert json.loads(out.read_text())["threshold"] == result["threshold"]


def test_a_training_citys_quicklook_uses_its_out_of_fold_threshold(tmp_path, monkeypatch):
    import json

    from builtup.deliver import quicklook as figures

    raster = write_raster(tmp_path / "r.tif", np.full((3, 64, 64), 0.1, np.float32))
    prob = np.full((64, 64), round(0.5 * PROB_SCALE), np.uint8)
    folder = tmp_path / "predictions" / "38SMA_Najaf"
    prediction = write_raster(folder / "20150207_DES.tif", prob, dtype="uint8", nodata=255)
    threshold = tmp_path / "t.json"
    threshold.write_text(json.dumps({"threshold": 0.8, "out_of_fold": {"38SMA_Najaf": 0.3}}))
    shown = {}
    monkeypatch.setattr(
        figures, "sample_row", lambda axes, gray, pred, label, title: shown.update(pred=pred)
    )
    figures.plot_quicklook(raster, prediction, threshold, tmp_path / "q.png")
    assert shown["pred"].all()


def polygon_map(tmp_path, rng):
    """A 1300 x 900 map (three strips) with blocks that cross the strip borders, one with a
    hole on a border, and speckle."""
    data = np.zeros((1300, 900), np.uint8)
    data[400:700, 100:400] = 200  # across row 512, with a hole across it
    data[500:530, 200:260] = 0
    data[1000:1100, 500:520] = 220  # across row 1024
    data[100:200, 600:700] = 240  # inside the first strip
    speckle = rng.uniform(size=data.shape) > 0.995
    data[speckle] = 250
    data[:, :10] = PROB_NODATA
    return write_raster(tmp_path / "map.tif", data, dtype="uint8", nodata=PROB_NODATA), data


def test_polygons_from_strips_are_those_of_the_whole_map(tmp_path, rng):
    import shapely
    from rasterio import features
    from shapely.geometry import shape

    path, data = polygon_map(tmp_path, rng)
    polygons, _ = builtup_polygons(path, 0.5, 0, 0)
    binary = ((data != PROB_NODATA) & (data >= 127)).astype(np.uint8)
    whole = [
        shape(g) for g, v in features.shapes(binary, mask=binary.astype(bool), transform=ORIGIN)
    ]
    assert len(polygons) == len(whole)
    assert sorted(round(p.area) for p in polygons) == sorted(round(p.area) for p in whole)
    assert shapely.unary_union(polygons).symmetric_difference(shapely.unary_union(whole)).area == 0
    assert all(p.is_valid for p in polygons)
    assert sum(len(p.interiors) for p in polygons) == 1  # the hole across the border


def test_polygons_hold_a_strip_of_the_map_not_the_whole(tmp_path, rng):
    import tracemalloc

    data = np.zeros((4096, 2048), np.uint8)
    data[1000:3000, 500:1500] = 200
    path = write_raster(tmp_path / "big.tif", data, dtype="uint8", nodata=PROB_NODATA)
    tracemalloc.start()
    polygons, _ = builtup_polygons(path, 0.5, 0, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(polygons) == 1
    assert peak < data.size, f"{peak / 2**20:.1f} MiB for a {data.size / 2**20:.0f} MiB map"
