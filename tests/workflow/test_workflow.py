"""Snakemake runs of the data-preparation half of the DAG on the tiny demo (256 px scenes)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from builtup.prepare.tile_stats import read_statistics

from conftest import REPO, Sandbox, rewrite_pixel

pytestmark = pytest.mark.slow

TRAIN = ["38RPV_Nasiryah", "38SLF_Mosul", "38SMA_Najaf", "38SNE_Souleimaniye"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    box = Sandbox(tmp_path_factory.mktemp("workflow"))
    box.config["experiments"] = []  # data preparation only; training has its own tests
    box.write_config()
    result = box.snakemake()
    assert result.returncode == 0, result.stderr[-3000:]
    return box


def test_outputs_keep_the_raw_grids(prepared):
    root = prepared.root
    sheet = (root / "config" / "scenes.tsv").read_text().splitlines()[1:]
    for line in sheet:
        city, scene, vv, _, split = line.split("\t")
        with (
            rasterio.open(root / vv) as raw,
            rasterio.open(root / f"results/rasters/{city}/{scene}.tif") as out,
        ):
            assert out.crs == raw.crs and out.transform == raw.transform
            assert out.shape == raw.shape and out.count == 3
            assert out.dtypes == ("float32",) * 3 and out.nodata == 0
            np.testing.assert_array_equal(out.read(2), raw.read(1))
            nodata = raw.read(1) == 0
        with rasterio.open(root / f"results/masks/{city}/{scene}.tif") as mask:
            assert mask.transform == raw.transform and mask.dtypes[0] == "uint8"
            values = mask.read(1)
            assert set(np.unique(values)) <= {0, 1, 255}
            np.testing.assert_array_equal(values == 255, nodata)
            assert (values == 1).any()
    with rasterio.open(root / "results/rasters/38SNE_Souleimaniye/20150126_ASC.tif") as src:
        assert src.transform.a == pytest.approx(10.0027)


def test_tiles_stats_and_folds(prepared):
    root = prepared.root
    for fold in TRAIN:
        summary = json.loads((root / f"results/folds/{fold}/summary.json").read_text())
        assert summary["val_cities"] == [fold] and fold not in summary["train_cities"]
        assert summary["train_tiles"] == 3 * 2 * 9 + 3 * 9  # the acquisitions', the stacks'
        assert summary["tiles_by_kind"]["stack"] == {"train": 3 * 9, "val": 9}
        assert set(summary["normalisation"]) == {
            "linear3",
            "db3",
            "db5",
            "linear5",
            "linear6",
            "log_sq3",
            "minmax_pow3",
            "vvvh_clip2",
            "stack_mean",
            "stack_mean_std",
            "stack_all",
            "series_db2",
        }
        db = summary["normalisation"]["db3"]
        assert all(-30 < m < -5 for m in db["mean"]) and all(2 < s < 12 for s in db["std"])
    stats = read_statistics(root / "results/tiles/38SLF_Mosul/20150108_DES/stats.tsv")
    assert len(stats) == 9 and stats["target_ratio"].max() > 0
    images = np.load(root / "results/tiles/38SLF_Mosul/20150108_DES/images.npy", mmap_mode="r")
    assert images.shape == (9, 3, 128, 128)


def test_export_tile_command(prepared, tmp_path):
    exe = Path(sys.executable).with_name("builtup")
    out = tmp_path / "tile.tif"
    tiles = prepared.root / "results/tiles/38SLF_Mosul/20150108_DES"
    subprocess.run([str(exe), "export-tile", str(tiles), "4", str(out)], check=True)
    with (
        rasterio.open(out) as src,
        rasterio.open(prepared.root / "results/rasters/38SLF_Mosul/20150108_DES.tif") as scene,
    ):
        assert src.crs == scene.crs
        col, row = (~scene.transform) @ (src.transform.c, src.transform.f)
        window = rasterio.windows.Window(round(col), round(row), 128, 128)
        np.testing.assert_array_equal(src.read(), scene.read(window=window))


TRAIN_SCENE_CHAIN = {
    "compose_raster": 1,
    "rasterize_mask": 3,  # its training and evaluation masks, and its city stack's mask
    "temporal_stack": 1,  # its city's stack
    "cut_tiles": 2,  # the scene's tiles and its city stack's
    "tile_stats": 2,
    "fold": 4,
    "baseline": 1,  # the baselines read every labelled scene
    "leaderboard": 1,  # which holds the baselines even without an experiment
    "all": 1,
}


def test_only_the_changed_scene_chain_is_stale(prepared):
    assert prepared.stale_jobs() == {}
    # Snakemake >= 9.18 checks input checksums: a scene is stale when its content changes
    rewrite_pixel(prepared.raw("38SMA_Najaf", "20150201_ASC"))
    assert prepared.stale_jobs() == TRAIN_SCENE_CHAIN
    rewrite_pixel(prepared.raw("38RNV_Samawah", "20150213_ASC", "vh"))
    target = "results/masks/38RNV_Samawah/20150213_ASC.tif"
    assert prepared.stale_jobs(target) == {"compose_raster": 1, "rasterize_mask": 1}


def test_lint_is_clean():
    exe = Path(sys.executable).with_name("snakemake")
    result = subprocess.run([str(exe), "--lint"], cwd=REPO, capture_output=True, text=True)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
