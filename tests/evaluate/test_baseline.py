"""The backscatter baselines: every valid pixel counted; the multi-temporal mean per city."""

import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from builtup.evaluate.baseline import (
    backscatter_histograms,
    city_mean_db_histograms,
    write_baselines,
)
from builtup.prepare.temporal import temporal_stack

from conftest import ORIGIN, write_raster

SHAPE = (128, 160)


def city(tmp_path, name, rng, acquisitions=4, speckle=1.0, transform=ORIGIN):
    """Acquisitions of one city: built-up 6 dB brighter in the left half, strongly speckled;
    the mask labels the left half built-up and has a nodata strip at the top."""
    built = np.zeros(SHAPE, bool)
    built[:, : SHAPE[1] // 2] = True
    mask = np.where(built, 1, 0).astype(np.uint8)
    mask[:8] = 255
    mask_path = write_raster(tmp_path / f"{name}_mask.tif", mask, dtype="uint8", nodata=255)
    rasters = []
    for k in range(acquisitions):
        db = np.where(built, -6.0, -12.0) + rng.normal(0, 4.0 * speckle, SHAPE)
        vv = (10 ** (db / 10)).astype("float32")
        image = np.stack([vv / 5, vv, vv * 0.6])
        image[:, :8] = 0
        rasters.append(write_raster(tmp_path / f"{name}_{k}.tif", image, transform=transform))
    stack = tmp_path / f"{name}_stack.tif"
    temporal_stack(rasters, stack)
    return {"rasters": [str(r) for r in rasters], "stack": str(stack), "mask": str(mask_path)}


def stack_of(tmp_path, name, rasters):
    temporal_stack(rasters, tmp_path / f"{name}.tif")
    return tmp_path / f"{name}.tif"


def test_every_valid_pixel_is_counted_even_beyond_the_bins(tmp_path):
    image = np.full((3, 20, 30), 1.0, np.float32)
    image[:, :, :10] = 1e-9  # -90 dB: floored outliers
    image[:, :, 10:20] = 1e4  # +40 dB: bright returns
    image[:, :2] = 0  # nodata
    mask = np.zeros((20, 30), np.uint8)
    mask[:, 15:] = 1
    raster = write_raster(tmp_path / "r.tif", image)
    mask_path = write_raster(tmp_path / "m.tif", mask, dtype="uint8", nodata=255)
    hist = backscatter_histograms(raster, mask_path)
    assert hist[0].sum() == hist[1].sum() == 18 * 30
    assert hist[1, 1].sum() == 18 * 15


def test_the_temporal_mean_beats_one_noisy_acquisition(tmp_path, rng):
    train = city(tmp_path, "train", rng)
    test = city(tmp_path, "test", rng)
    cities = [
        {"city": "A", "split": "train", **train},
        {"city": "B", "split": "test", **test},
    ]
    scenes = [
        {"city": c["city"], "scene": str(k), "split": c["split"], "raster": r, "mask": c["mask"]}
        for c in cities
        for k, r in enumerate(c["rasters"])
    ]
    summary = write_baselines(scenes, cities, tmp_path / "s.json", tmp_path / "c.tsv")
    assert json.loads((tmp_path / "s.json").read_text()) == summary
    single, multi = summary["single_scene"], summary["multi_temporal"]
    assert single["rule"].startswith("VV >=") or single["rule"].startswith("VH >=")
    assert multi["rule"].startswith("mean over the acquisitions of V")
    assert multi["test"]["f1"] > single["test"]["f1"] + 0.05
    assert multi["test"]["f1"] > 0.85
    rows = (tmp_path / "c.tsv").read_text().splitlines()
    assert rows[0].startswith("city\tsplit") and len(rows) == 3
    assert multi["cities"]["B"] == multi["test"]  # one test city: its scores are the split's
    assert single["cities"]["B"] == single["test"] and set(single["cities"]) == {"A", "B"}


def test_acquisitions_on_another_grid_are_warped_onto_the_reference(tmp_path, rng):
    reference = city(tmp_path, "ref", rng, acquisitions=1, speckle=0.0)
    shifted = Affine(10, 0, ORIGIN.c + 20, 0, -10, ORIGIN.f)  # 2 px east
    other = city(tmp_path, "other", rng, acquisitions=1, speckle=0.0, transform=shifted)
    both = stack_of(tmp_path, "both", reference["rasters"] + other["rasters"])
    hist = city_mean_db_histograms(both, reference["mask"])
    alone = city_mean_db_histograms(reference["stack"], reference["mask"])
    assert hist.sum() == alone.sum()  # every labelled valid pixel of the reference, once
    assert not np.array_equal(hist, alone)  # the other acquisition did contribute


def test_each_training_city_is_scored_with_the_rule_of_the_others(tmp_path, rng):
    """Two training cities whose best thresholds differ: each is scored with the other's."""
    from builtup.deliver.threshold import confusion_at
    from builtup.evaluate.baseline import best_backscatter_threshold, multi_temporal_baseline

    bright = city(tmp_path, "bright", rng, speckle=0.3)
    dim_images = []
    for path in bright["rasters"]:
        import rasterio

        with rasterio.open(path) as src:
            dim_images.append(write_raster(tmp_path / f"dim_{Path(path).name}", src.read() / 8))
    dim = {"stack": str(stack_of(tmp_path, "dim_stack", dim_images)), "mask": bright["mask"]}
    cities = [
        {"city": "A", "split": "train", **bright},
        {"city": "B", "split": "train", "stack": dim["stack"], "mask": dim["mask"]},
    ]
    summary, rows = multi_temporal_baseline(cities)
    hist = {c["city"]: city_mean_db_histograms(c["stack"], c["mask"]) for c in cities}
    for own, other in (("A", "B"), ("B", "A")):
        rule = best_backscatter_threshold(hist[other])
        matrix = confusion_at(hist[own][rule["index"]], rule["level"])
        expected = 2 * matrix[1, 1] / (2 * matrix[1, 1] + matrix[0, 1] + matrix[1, 0])
        assert summary["cities"][own]["f1"] == pytest.approx(expected)
        assert summary["cities"][own]["f1"] < best_backscatter_threshold(hist[own])["f1"]
