import re

import pandas as pd
from snakemake.exceptions import WorkflowError

from builtup.errors import InputError
from builtup.experiment import read_experiment
from builtup.folds import ALL_CITIES
from builtup.sheet import check_cities, read_sheet


def load_sheet():
    """The scenes sheet restricted to the configured cities, checked against the config."""
    try:
        sheet = read_sheet(config["scenes"])
        validate(sheet, "../schemas/scenes.schema.yaml")
        check_cities(sheet, config["cities"], config["labels"], config["scenes"])
    except InputError as err:
        raise WorkflowError(f"ERROR: {err}") from None
    sheet = sheet[sheet["city"].isin(config["cities"])]
    return sheet.set_index(["city", "scene"], drop=False).sort_index()


def load_experiments():
    """The active experiments' settings (schema-checked; names are checked by the train job)."""
    try:
        return {
            name: read_experiment(f"config/experiments/{name}.yaml")
            for name in config["experiments"]
        }
    except InputError as err:
        raise WorkflowError(f"ERROR: {err}") from None


SHEET = load_sheet()
EXPERIMENTS = load_experiments()
TRAIN_CITIES = sorted(SHEET.loc[SHEET["split"] == "train", "city"].unique())
LABELLED_CITIES = sorted(c for c in SHEET["city"].unique() if c in config["labels"])


def _alternatives(values):
    return "|".join(re.escape(v) for v in values) or "(?!)"


wildcard_constraints:
    city=_alternatives(SHEET["city"].unique()),
    scene=_alternatives(SHEET["scene"].unique()),
    fold=_alternatives([*TRAIN_CITIES, ALL_CITIES]),
    experiment=_alternatives(EXPERIMENTS),


def scenes_of(city, split=None):
    rows = SHEET[SHEET["city"] == city]
    if split is not None:
        rows = rows[rows["split"] == split]
    return list(rows["scene"])


def scene_row(wildcards):
    return SHEET.loc[(wildcards.city, wildcards.scene)]


def raw_inputs(wildcards):
    row = scene_row(wildcards)
    return {"vv": row["vv"], "vh": row["vh"]}


def band_of(pol):
    def band(wildcards):
        value = scene_row(wildcards).get(f"{pol}_band", "")
        return int(value) if value else 1

    return band


def labels_of(wildcards):
    return config["labels"][wildcards.city]


def training_scene_files(pattern):
    return [
        pattern.format(city=city, scene=scene)
        for city in TRAIN_CITIES
        for scene in scenes_of(city, "train")
    ]


def demo_outputs():
    """Raw files of the sheet and label files that live under the demo root."""
    root = Path(config["demo"]["root"])
    raw = [p for p in [*SHEET["vv"], *SHEET["vh"]] if Path(p).is_relative_to(root)]
    shapefiles = [p for p in config["labels"].values() if Path(p).is_relative_to(root)]
    sidecars = [
        str(Path(p).with_suffix(ext))
        for p in shapefiles
        for ext in (".shx", ".dbf", ".prj")
    ]
    return sorted(set(raw)) + shapefiles + sidecars


def demo_root(wildcards):
    return config["demo"]["root"]


def tiles_root(wildcards):
    return "results/tiles"


def experiment_devices(wildcards):
    return EXPERIMENTS[wildcards.experiment]["devices"]


def experiment_gpus(wildcards):
    """GPUs a training job holds: the experiment's devices when it runs on GPUs, else none."""
    spec = EXPERIMENTS[wildcards.experiment]
    return spec["devices"] if spec["accelerator"] == "gpu" else 0


def trained_folds():
    return TRAIN_CITIES + ([ALL_CITIES] if config["training"]["all_cities"] else [])


def all_targets():
    folds = expand("results/folds/{fold}/summary.json", fold=TRAIN_CITIES)
    models = expand(
        "results/models/{experiment}/{fold}/model.ckpt",
        experiment=config["experiments"],
        fold=trained_folds(),
    )
    masks = [
        f"results/masks/{city}/{scene}.tif"
        for city in LABELLED_CITIES
        for scene in scenes_of(city)
    ]
    rasters = [
        f"results/rasters/{row.city}/{row.scene}.tif" for row in SHEET.itertuples()
    ]
    return folds + masks + rasters + models
