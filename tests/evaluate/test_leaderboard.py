import json

import pandas as pd
import yaml

from builtup.config.experiment import read_experiment, workflow_delivery
from builtup.evaluate.leaderboard import ensemble_settings, experiment_settings, write_leaderboard

from conftest import REPO


def scores(f1):
    return {"f1": f1, "iou_1": f1 / (2 - f1), "precision": f1, "recall": f1}


def test_models_and_baselines_in_one_table_best_test_first(tmp_path):
    summaries = {}
    for name, (train, test) in {"a": (0.8, 0.7), "b": (0.85, 0.75), "pair": (0.9, None)}.items():
        overall = {"train_out_of_fold": scores(train)}
        if test is not None:
            overall["test"] = scores(test)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"threshold": 0.5, "overall": overall}))
        cities = tmp_path / f"{name}.tsv"
        cities.write_text(f"city\tsplit\tf1\nX_x\ttrain\t{train}\nY_y\ttest\t{test or 0.1}\n")
        summaries[name] = (str(path), str(cities))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(
        json.dumps(
            {
                "single_scene": {
                    "rule": "VV >= -4.1 dB",
                    "train": scores(0.6),
                    "test": scores(0.6),
                },
                "multi_temporal": {
                    "rule": "mean VV >= -5 dB",
                    "train": scores(0.65),
                    "cities": {"X_x": scores(0.65)},
                },
            }
        )
    )
    kinds = {"a": "experiment", "b": "experiment", "pair": "ensemble"}
    settings = {
        "a": {"input": "scene", "recipe": "db3"},
        "b": {"input": "stack", "recipe": "stack_mean"},
        "pair": {"input": "scene", "recipe": "db3"},
    }
    out, per_city = tmp_path / "leaderboard.tsv", tmp_path / "cities.tsv"
    facts = {
        "X_x": {"split": "train", "acquisitions": 2},
        "Y_y": {"split": "test", "acquisitions": 5},
    }
    write_leaderboard(summaries, kinds, settings, baseline, out, facts, per_city)
    table = pd.read_csv(out, sep="\t")
    assert table["name"].tolist() == [
        "b",
        "a",
        "baseline: single-scene",
        "pair",
        "baseline: multi-temporal",
    ]
    assert (
        table.loc[0, "train_scored"] == "out of fold, threshold of the other cities"
        and table.loc[0, "test_f1"] == 0.75
    )
    row = table.set_index("name").loc["baseline: multi-temporal"]
    assert row["kind"] == "baseline" and row["train_scored"] == "rule of the other cities"
    assert pd.isna(row["test_f1"]) and row["train_f1"] == 0.65
    assert list(table.columns[-2:]) == ["f1 X_x", "f1 Y_y"]
    by_name = table.set_index("name")
    assert by_name.loc["b", "f1 X_x"] == 0.85 and by_name.loc["b", "f1 Y_y"] == 0.75
    assert by_name.loc["baseline: multi-temporal", "f1 X_x"] == 0.65
    assert pd.isna(by_name.loc["baseline: multi-temporal", "f1 Y_y"])
    assert table.set_index("name")["input"].to_dict() == {
        "a": "scene",
        "b": "stack",
        "pair": "scene",
        "baseline: single-scene": "scene",
        "baseline: multi-temporal": "stack",
    }
    cities = pd.read_csv(per_city, sep="\t").set_index("city")
    assert cities.columns.tolist()[:3] == ["split", "acquisitions", "scored"]
    assert cities["acquisitions"].to_dict() == {"X_x": 2, "Y_y": 5}
    assert cities.loc["Y_y", "scored"] == "test" and cities.loc["Y_y", "b"] == 0.75
    assert cities.loc["X_x", "baseline: multi-temporal"] == 0.65
    assert pd.isna(cities.loc["Y_y", "baseline: multi-temporal"])


def test_settings_that_tell_the_experiments_apart():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    second = experiment_settings(
        read_experiment(REPO / "config/experiments/unet_vgg11_2nd_place.yaml", config)
    )
    assert second == {
        "input": "scene",
        "architecture": "Unet vgg11 (from unet_vgg11_2nd_place_one_stage)",
        "recipe": "vvvh_clip2",
        "sampling": "scene windows 896 px, weights 0.5/0.5",
        "models": "unet_vgg11_2nd_place, all folds",
        "stitching": "crop 896 of 1120",
        "tta": "none",
        "aggregation": "logit",
    }
    first = read_experiment(REPO / "config/experiments/unet_vgg11_2nd_place_one_stage.yaml")
    assert experiment_settings(first)["architecture"] == "Unet vgg11 (ImageNet)"
    seed = experiment_settings(
        read_experiment(REPO / "config/experiments/fpn_se_resnext50_db_step1_seed.yaml", config)
    )
    assert seed["models"] == "fpn_se_resnext50_db, fold 38SNE_Souleimaniye"
    assert seed["stitching"] == "blend 2048/0" and seed["aggregation"] == "vote"
    unet = experiment_settings(
        read_experiment(REPO / "config/experiments/unet_resnet50.yaml", config)
    )
    assert unet["sampling"] == "tiles, weights 0.3/0.7"
    assert unet["stitching"] == "blend 512/128" and unet["aggregation"] == "mean"
    assert unet["tta"] == "rot90"
    temporal = experiment_settings(
        read_experiment(REPO / "config/experiments/temporal_demo.yaml", config)
    )
    assert temporal["input"] == "stack" and temporal["aggregation"] == "stack statistics"
    fusion = experiment_settings(
        read_experiment(REPO / "config/experiments/fusion_demo.yaml", config)
    )
    assert fusion["input"] == "series" and fusion["aggregation"] == "learned fusion"
    pair = ensemble_settings({"second": second, "unet": unet}, workflow_delivery(config))
    assert pair["architecture"] == "mean of second + unet"
    assert pair["recipe"] == "vvvh_clip2 + linear3" and pair["aggregation"] == "mean"
