"""The whole DAG on the tiny demo: raw scenes to shapefiles, metrics, quicklooks and the report."""

import json
import subprocess
import sys

import fiona
import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import yaml

from builtup.core.bands import stacked_scenes
from builtup.core.checksums import sha256_of
from builtup.core.probability import LOGIT, PROBABILITY, encoding_of, read_logits

from conftest import (
    REPO,
    TINY,
    Sandbox,
    at_cpu_scale,
    place_imagenet_weights,
)

pytestmark = pytest.mark.slow

TRAIN_CITIES = ["38SLF_Mosul", "38SMA_Najaf"]
TEST_CITIES = ["38SLD_Tikrit"]  # its two acquisitions share a date
ONE_FOLD = "38SMA_Najaf"


SHIPPED = sorted(path.stem for path in (REPO / "config/experiments").glob("*.yaml"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Every shipped experiment, shrunk in scale only, beside the test experiment ``tiny`` and
    an ensemble, through the whole DAG: ImageNet encoders from local weights files."""
    box = Sandbox(tmp_path_factory.mktemp("end_to_end"))
    for name in SHIPPED:
        spec = at_cpu_scale(yaml.safe_load((REPO / f"config/experiments/{name}.yaml").read_text()))
        if spec.get("prediction", {}).get("fold_models", "all") != "all":
            spec["prediction"]["fold_models"] = ONE_FOLD  # a held-out city of this run
        (box.root / f"config/experiments/{name}.yaml").write_text(yaml.safe_dump(spec))
        if spec.get("model", {}).get("encoder_weights") == "imagenet":
            place_imagenet_weights(spec["model"], box.root)
    (box.root / "config/experiments/tiny.yaml").write_text(yaml.safe_dump(TINY))
    box.config["cities"] = TRAIN_CITIES + TEST_CITIES  # a subset keeps the run short
    box.config["experiments"] = ["tiny", *SHIPPED]
    box.config["ensembles"] = {"pair": ["tiny", "demo"]}
    box.config["delivery"] = {"threshold": "oof", "min_area": 200}
    box.config["quicklooks"] = ["tiny", "temporal_demo"]  # a scene and a stack experiment
    box.write_config()
    result = box.snakemake(timeout=2400)
    assert result.returncode == 0, result.stderr[-4000:]
    return box


def test_submission_shapefiles_for_the_test_cities(finished):
    folder = finished.root / "results/submission/tiny"
    assert sorted(p.stem for p in folder.glob("*.shp")) == TEST_CITIES
    for city in TEST_CITIES:
        assert (folder / f"{city}.prj").exists()
        with fiona.open(folder / f"{city}.shp") as src:
            assert src.crs.to_epsg() == 32638 and len(src) > 0
            assert {f.properties["DN"] for f in src} == {255}


@pytest.mark.parametrize("experiment", ["tiny", "unet_vgg11_2nd_place"])  # blend, crop stitching
def test_predictions_are_exactly_on_the_scene_grids(finished, experiment):
    root = finished.root
    for raster in sorted(root.glob("results/rasters/*/*.tif")):
        city, scene = raster.parent.name, raster.stem
        with (
            rasterio.open(raster) as src,
            rasterio.open(root / f"results/predictions/{experiment}/{city}/{scene}.tif") as pred,
        ):
            assert pred.transform == src.transform and pred.shape == src.shape
            encoding = encoding_of(pred)  # the 2nd place's city maps are mean logits
            assert encoding is (LOGIT if experiment == "unet_vgg11_2nd_place" else PROBABILITY)
            assert pred.crs == src.crs and pred.nodata == encoding.nodata  # 256 px: no overviews
            nodata = src.read(1) == 0
            np.testing.assert_array_equal(pred.read(1) == encoding.nodata, nodata)


def test_metrics_out_of_fold_and_test(finished):
    root = finished.root
    summary = json.loads((root / "results/evaluation/tiny/summary.json").read_text())
    assert set(summary["overall"]) == {"train_out_of_fold", "test"}
    assert summary["overall"]["train_out_of_fold"]["cities"] == TRAIN_CITIES
    assert 0 < summary["threshold"] < 1
    assert summary["evaluation_masks"] == "pixel centres"
    single, multi = summary["baseline"]["single_scene"], summary["baseline"]["multi_temporal"]
    assert single["rule"].startswith(("VV >=", "VH >="))
    assert multi["rule"].startswith("mean over the acquisitions of V")
    assert {"train", "test"} <= set(single) and {"train", "test"} <= set(multi)
    baseline_cities = (root / "results/baseline/cities.tsv").read_text().splitlines()
    assert len(baseline_cities) == 1 + 3
    scenes = (root / "results/evaluation/tiny/scenes.tsv").read_text().splitlines()
    assert len(scenes) == 1 + 6
    threshold = json.loads((root / "results/thresholds/tiny.json").read_text())
    assert threshold["mode"] == "oof" and threshold["threshold"] == threshold["oof_best"]


def test_metrics_use_masks_burnt_from_pixel_centres(finished):
    """Training masks burn every touched pixel; the evaluation masks only pixel centres."""
    root = finished.root
    masks = sorted(root.glob("results/masks/*/*.tif"))
    stacks = [mask for mask in masks if mask.stem == "stack"]
    assert len(masks) - len(stacks) == 6  # the acquisitions'
    assert sorted(m.parent.name for m in stacks) == TRAIN_CITIES  # the tiled stacks'
    for mask in masks:
        evaluation = root / "results/eval_masks" / mask.parent.name / mask.name
        with rasterio.open(mask) as train, rasterio.open(evaluation) as scored:
            touched, centres = train.read(1), scored.read(1)
        assert np.array_equal(touched == 255, centres == 255)
        assert ((centres == 1) <= (touched == 1)).all()
        assert (centres == 1).sum() < (touched == 1).sum()


def test_temporal_stacks_on_the_city_grids(finished):
    root = finished.root
    for city in TRAIN_CITIES + TEST_CITIES:
        reference = sorted((root / "results/rasters" / city).glob("*.tif"))[0]
        with (
            rasterio.open(reference) as ref,
            rasterio.open(root / f"results/stacks/{city}.tif") as st,
        ):
            assert st.transform == ref.transform and st.shape == ref.shape
            scenes = sorted(p.stem for p in (root / "results/rasters" / city).glob("*.tif"))
            assert stacked_scenes(st.descriptions) == scenes
            count = np.isfinite(st.read()[0::2]).sum(axis=0)
            assert count.max() == 2 and set(np.unique(count[count > 0])) <= {1, 2}


def test_a_stack_experiment_predicts_each_citys_stack_on_its_grid(finished):
    root = finished.root
    for city in TRAIN_CITIES + TEST_CITIES:
        folder = root / "results/predictions/temporal_demo" / city
        assert [p.name for p in folder.glob("*.tif")] == ["stack.tif"]
        with (
            rasterio.open(root / f"results/stacks/{city}.tif") as stack,
            rasterio.open(folder / "stack.tif") as pred,
            rasterio.open(root / f"results/cities/temporal_demo/{city}.tif") as city_map,
        ):
            assert pred.transform == stack.transform and pred.shape == stack.shape
            assert city_map.transform == stack.transform
            no_acquisition = np.isnan(stack.read()).all(axis=0)
            np.testing.assert_array_equal(pred.read(1) == 255, no_acquisition)
        assert (root / f"results/quicklooks/temporal_demo/{city}/stack.png").exists()
    assert (root / "results/submission/temporal_demo/38SLD_Tikrit.shp").exists()
    scenes = pd.read_csv(root / "results/evaluation/temporal_demo/scenes.tsv", sep="\t")
    assert sorted(scenes["city"]) == sorted(TRAIN_CITIES + TEST_CITIES)
    assert set(scenes["scene"]) == {"stack"}


def test_three_ways_of_using_a_citys_acquisitions_and_f1_per_city(finished):
    """Answers per acquisition averaged (demo), stack statistics (temporal_demo), learned
    fusion (fusion_demo): each a leaderboard row, and the table per city beside its count."""
    root = finished.root
    table = pd.read_csv(root / "results/evaluation/leaderboard.tsv", sep="\t").set_index("name")
    ways = table.loc[["demo", "temporal_demo", "fusion_demo"], ["input", "aggregation"]]
    assert ways.values.tolist() == [
        ["scene", "mean"],
        ["stack", "stack statistics"],
        ["series", "learned fusion"],
    ]
    for city in TRAIN_CITIES + TEST_CITIES:
        folder = root / "results/predictions/fusion_demo" / city
        assert [p.name for p in folder.glob("*.tif")] == ["stack.tif"]
    for fold in TRAIN_CITIES:
        state = torch.load(root / f"results/models/fusion_demo/{fold}/model.ckpt", "cpu")
        trained = state["hyper_parameters"]["experiment"]
        assert trained["recipe"] == "series_db2" and trained["sampler"]["min_acquisitions"] == 2
        assert any(key.startswith("model.fuse.") for key in state["state_dict"])
    cities = pd.read_csv(root / "results/evaluation/cities.tsv", sep="\t").set_index("city")
    assert sorted(cities.index) == sorted(TRAIN_CITIES + TEST_CITIES)
    assert set(cities["acquisitions"]) == {2} and cities.loc["38SLD_Tikrit", "split"] == "test"
    for name in ("demo", "temporal_demo", "fusion_demo", "baseline: multi-temporal"):
        for city in cities.index:
            assert cities.loc[city, name] == table.loc[name, f"f1 {city}"]


def test_folds_hold_scene_and_stack_tiles(finished):
    for city in TRAIN_CITIES:
        summary = json.loads((finished.root / f"results/folds/{city}/summary.json").read_text())
        assert set(summary["tiles_by_kind"]) == {"scene", "stack"}
        assert summary["tiles_by_kind"]["stack"]["val"] == 9  # one 256 px stack, 128 px tiles
        assert {"db3", "stack_mean_std"} <= set(summary["normalisation"])


def test_leaderboard_ranks_experiments_ensembles_and_baselines(finished):
    table = pd.read_csv(finished.root / "results/evaluation/leaderboard.tsv", sep="\t")
    assert sorted(table["name"]) == sorted(
        ["tiny", *SHIPPED, "pair", "baseline: single-scene", "baseline: multi-temporal"]
    )
    assert table.set_index("name").loc["temporal_demo", "input"] == "stack"
    assert [c for c in table.columns if c.startswith("f1 ")] == [
        f"f1 {city}" for city in sorted(TRAIN_CITIES + TEST_CITIES)
    ]
    assert table[[f"f1 {city}" for city in TEST_CITIES]].notna().all().all()
    assert table["test_f1"].is_monotonic_decreasing
    summary = json.loads((finished.root / "results/evaluation/tiny/summary.json").read_text())
    row = table.set_index("name").loc["tiny"]
    assert row["train_f1"] == round(summary["overall"]["train_out_of_fold"]["f1"], 4)


def test_the_2nd_place_experiment_trains_on_scene_windows_and_delivers_mean_logits(finished):
    root = finished.root
    for fold in TRAIN_CITIES:
        state = torch.load(root / f"results/models/unet_vgg11_2nd_place/{fold}/model.ckpt", "cpu")
        trained = state["hyper_parameters"]["experiment"]
        assert trained["sampler"]["source"] == "scenes" and trained["recipe"] == "vvvh_clip2"
        epochs = pd.read_csv(root / f"results/models/unet_vgg11_2nd_place/{fold}/metrics.csv")
        assert len(epochs) == 1 and np.isfinite(epochs["val/loss"]).all()
    # the city map is the probability of the mean logit of the city's acquisitions
    folder = root / "results/predictions/unet_vgg11_2nd_place/38SLD_Tikrit"
    logits, valid = [], []
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as src:
            logit, ok = read_logits(src)
        logits.append(logit)
        valid.append(ok)
    assert len(logits) == 2
    count = np.sum(valid, axis=0)
    mean = np.where(valid, logits, 0).sum(axis=0) / np.maximum(count, 1)
    with rasterio.open(root / "results/cities/unet_vgg11_2nd_place/38SLD_Tikrit.tif") as src:
        city = src.read(1).astype(int)
    expected = np.rint(254 / (1 + np.exp(-mean)))
    assert np.abs(city[count > 0] - expected[count > 0]).max() <= 1
    threshold = json.loads((root / "results/thresholds/unet_vgg11_2nd_place.json").read_text())
    assert threshold["threshold"] == 0.5  # logit 0
    assert (root / "results/submission/unet_vgg11_2nd_place/38SLD_Tikrit.shp").exists()
    row = pd.read_csv(root / "results/evaluation/leaderboard.tsv", sep="\t").set_index("name")
    row = row.loc["unet_vgg11_2nd_place"]
    assert row["sampling"] == "scene windows 128 px, weights 0.5/0.5"
    assert row["stitching"] == "crop 128 of 160" and row["aggregation"] == "logit"
    assert row["architecture"] == "Unet vgg11 (from unet_vgg11_2nd_place_one_stage)"


def test_the_2nd_places_second_stage_starts_from_its_first_stages_models(finished):
    root = finished.root
    for fold in TRAIN_CITIES:
        first = root / f"results/models/unet_vgg11_2nd_place_one_stage/{fold}/model.ckpt"
        second = torch.load(root / f"results/models/unet_vgg11_2nd_place/{fold}/model.ckpt", "cpu")
        assert second["hyper_parameters"]["data"]["start_sha256"] == sha256_of(first)
        log = (root / f"results/logs/train/unet_vgg11_2nd_place/{fold}.log").read_text()
        assert f"network weights from {first.relative_to(root)}" in log, log[-2000:]
        assert "model: epoch of lowest val/loss" in log, log[-2000:]
    table = pd.read_csv(root / "results/evaluation/leaderboard.tsv", sep="\t").set_index("name")
    assert {"unet_vgg11_2nd_place", "unet_vgg11_2nd_place_one_stage"} <= set(table.index)


def test_the_3rd_places_delivery_protocol_and_the_ladder_to_ours(finished):
    """Step 1 predicts with one fold model, whole windows without overlap and a vote; step 3
    with every fold model; neither trains a model of its own."""
    root = finished.root
    logs = root / "results/logs/predict_scene"
    models = root / "results/models/fpn_se_resnext50_db"
    for step, folds in (("step1_seed", [ONE_FOLD]), ("step3_folds", TRAIN_CITIES)):
        name = f"fpn_se_resnext50_db_{step}"
        assert not (root / f"results/models/{name}").exists()
        for log in (logs / name / "38SLD_Tikrit").glob("*.log"):
            used = ", ".join(str(models.relative_to(root) / f / "model.ckpt") for f in folds)
            assert f"{len(folds)} fold model(s): {used}" in log.read_text()
        with rasterio.open(root / f"results/cities/{name}/38SLD_Tikrit.tif") as src:
            city = src.read(1)
        assert set(np.unique(city)) <= {0, 254, 255}  # a vote: built-up or not
    table = pd.read_csv(root / "results/evaluation/leaderboard.tsv", sep="\t").set_index("name")
    steps = table.loc[
        [f"fpn_se_resnext50_db_step{n}" for n in ("1_seed", "2_windows", "3_folds", "4_mean")]
    ]
    assert (
        steps["models"].tolist()
        == [f"fpn_se_resnext50_db, fold {ONE_FOLD}"] * 2 + ["fpn_se_resnext50_db, all folds"] * 2
    )
    assert steps["stitching"].iloc[0] == "blend 288/0"
    assert steps["aggregation"].tolist() == ["vote", "vote", "vote", "mean"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_experiment_delivers_shapefiles_and_a_leaderboard_row(finished, name):
    """The file a user runs, at CPU scale: trained per fold (from the fetched ImageNet weights
    where it says so), predicted with its own stitching and TTA, delivered and ranked."""
    root = finished.root
    models = yaml.safe_load((REPO / f"config/experiments/{name}.yaml").read_text())
    models = models.get("models_of") or name
    shipped = yaml.safe_load((REPO / f"config/experiments/{models}.yaml").read_text())
    for fold in TRAIN_CITIES:
        state = torch.load(root / f"results/models/{models}/{fold}/model.ckpt", "cpu")
        trained = state["hyper_parameters"]["experiment"]["model"]
        assert trained["encoder_weights"] == shipped["model"]["encoder_weights"]
    with fiona.open(root / f"results/submission/{name}/38SLD_Tikrit.shp") as src:
        assert src.crs.to_epsg() == 32638
        assert {f.properties["DN"] for f in src} <= {255}
    summary = json.loads((root / f"results/evaluation/{name}/summary.json").read_text())
    assert 0 <= summary["overall"]["test"]["f1"] <= 1
    table = pd.read_csv(root / "results/evaluation/leaderboard.tsv", sep="\t").set_index("name")
    assert table.loc[name, "test_f1"] == round(summary["overall"]["test"]["f1"], 4)


def test_quicklooks_and_report(finished):
    root = finished.root
    assert len(list(root.glob("results/quicklooks/tiny/*/*.png"))) == 6
    quicklooked = sorted(p.name for p in root.glob("results/quicklooks/*"))
    assert quicklooked == ["temporal_demo", "tiny"]  # as the config asks
    result = finished.snakemake("--report", "results/report.html")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (root / "results/report.html").stat().st_size > 100_000


def test_ensemble_averages_its_members(finished):
    root = finished.root
    scene = "results/predictions/{}/38SLD_Tikrit/20150207_DES.tif"
    values = []
    for name in ("tiny", "demo", "pair"):
        with rasterio.open(root / scene.format(name)) as src:
            values.append(src.read(1).astype(int))
    valid = values[2] != 255
    mean = (values[0] + values[1]) / 2
    assert np.abs(values[2][valid] - mean[valid]).max() <= 1
    assert (root / "results/submission/pair/38SLD_Tikrit.shp").exists()
    assert (root / "results/evaluation/pair/summary.json").exists()


def acquisition_count_table(root, experiment, city, *counts):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/bench_acquisition_count.py"), "--run", str(root)]
        + ["--experiment", experiment, "--city", city, "--counts", *map(str, counts)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    rows = [line.strip("| ").split(" | ") for line in result.stdout.splitlines()]
    return result, {int(row[0]): float(row[1]) for row in rows if row[0].isdigit()}


def test_a_city_map_from_fewer_acquisitions_is_scored_as_the_run_scores_it(finished):
    """bench_acquisition_count.py: with all of a city's acquisitions it gives the run's own
    F1: a fused model on a training city (its fold model) and on a test city (every fold
    model), a per-acquisition model on a test city."""
    cities = pd.read_csv(finished.root / "results/evaluation/cities.tsv", sep="\t")
    f1 = cities.set_index("city")
    runs = [
        ("fusion_demo", "38SMA_Najaf"),
        ("fusion_demo", "38SLD_Tikrit"),
        ("tiny", "38SLD_Tikrit"),
    ]
    for experiment, city in runs:
        result, table = acquisition_count_table(finished.root, experiment, city, 1, 2)
        assert result.returncode == 0, result.stderr[-2000:]
        assert list(table) == [1, 2]
        assert f1.loc[city, experiment] > 0  # the tiny run's models score these cities
        assert table[2] == pytest.approx(f1.loc[city, experiment], abs=0.0015)
        assert 0 <= table[1] <= 1
    result, _ = acquisition_count_table(finished.root, "fusion_demo", "38SLF_Mosul", 3)
    assert result.returncode != 0
    assert "38SLF_Mosul has 2 acquisitions: counts go from 1 to 2" in result.stderr
    result, _ = acquisition_count_table(finished.root, "fusion_demo", "38RNV_Samawah", 1)
    assert result.returncode != 0 and "fusion_demo has no map of 38RNV_Samawah" in result.stderr


def test_nothing_left_to_do(finished):
    result = finished.snakemake("-n")
    assert "Nothing to be done" in result.stdout + result.stderr
