import dataclasses
import re
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError

from builtup.core.bands import STACK
from builtup.core.errors import InputError
from builtup.core.recipes import get_recipe
from builtup.config.encoders import LIBRARIES, weights_file
from builtup.config.experiment import (
    check_no_start_cycle,
    check_same_network,
    read_experiment,
    workflow_delivery,
)
from builtup.prepare.folds import ALL_CITIES
from builtup.evaluate.leaderboard import ensemble_settings, experiment_settings
from builtup.config.sheet import check_cities, check_inputs_exist, read_sheet
from builtup.config.name_records import builders_installed, is_recorded, record

# Experiments whose names built at an earlier run, in Snakemake's folder of the working dir
NAME_RECORDS = Path(".snakemake/builtup/checked_names")

# -------- Sheet and config ----------------------------------------------------


def load_sheet():
    """The scenes sheet restricted to the configured cities, checked against the config."""
    try:
        sheet = read_sheet(config["scenes"])
        check_cities(sheet, config["cities"], config["labels"], config["scenes"])
        sheet = sheet[sheet["city"].isin(config["cities"])]
        made_under = Path(config["demo"]["root"]) if config["demo"]["enabled"] else None
        check_inputs_exist(
            sheet, config["labels"], made_under, config["scenes"], CONFIG_FILE
        )
    except InputError as err:
        raise WorkflowError(f"ERROR: {err}") from None
    return sheet.set_index(["city", "scene"], drop=False).sort_index()


def load_experiments():
    """The active experiments' settings and those of the experiments whose models they start
    from or predict with: schema, relations, and (in the main process only, where the
    training libraries are installed) every name and argument built as the jobs will."""
    experiments, wanted = {}, list(config["experiments"])
    try:
        while wanted:
            name = wanted.pop()
            if name not in experiments:
                experiment = read_experiment(f"config/experiments/{name}.yaml", config)
                experiments[name] = experiment
                wanted += [
                    e for e in (experiment.start_from, experiment.models_of) if e
                ]
        for experiment in experiments.values():
            if experiment.start_from:
                check_same_network(experiment, experiments[experiment.start_from])
        check_no_start_cycle(experiments)
        if workflow.is_main_process and builders_installed():
            check_names_once(experiments.values())
    except InputError as err:
        raise WorkflowError(f"ERROR: {err}") from None
    for experiment in experiments.values():
        if experiment.recipe not in config["recipes"]:
            raise WorkflowError(
                f"ERROR: {experiment.path}: reads recipe {experiment.recipe}, whose statistics "
                "the folds do not compute: add it to 'recipes' in config/config.yaml"
            )
    return experiments


def check_names_once(experiments):
    """Every name and argument built as the jobs will, for the experiments not recorded as
    built before: a dry run of known experiments imports no training library."""
    unseen = [e for e in experiments if not is_recorded(e, NAME_RECORDS)]
    if unseen:
        from builtup.train.names import checked

        for experiment in unseen:
            record(checked(experiment), NAME_RECORDS)


def load_ensembles():
    """Ensembles: names of lists of active experiments whose predictions are averaged."""
    ensembles = config["ensembles"]
    for name, members in ensembles.items():
        if name in config["experiments"]:
            raise WorkflowError(
                f"ERROR: {CONFIG_FILE}: ensemble {name} has the name of an experiment"
            )
        for member in members:
            if member not in config["experiments"]:
                raise WorkflowError(
                    f"ERROR: {CONFIG_FILE}: ensemble {name} names {member}, "
                    "which is not an active experiment (config 'experiments')"
                )
        if len({input_kind(member) for member in members}) > 1:
            raise WorkflowError(
                f"ERROR: {CONFIG_FILE}: ensemble {name} mixes experiments that read "
                "scenes and temporal stacks (their predictions are not of the same rasters)"
            )
    return ensembles


SHEET = load_sheet()


EXPERIMENTS = load_experiments()


def input_kind(name):
    """What an experiment (or an ensemble, by its first member) predicts: scene or stack."""
    if name in config["ensembles"]:
        return input_kind(config["ensembles"][name][0])
    return EXPERIMENTS[name].kind


ENSEMBLES = load_ensembles()


TRAIN_CITIES = sorted(SHEET.loc[SHEET["split"] == "train", "city"].unique())


def check_fold_models():
    """A test city predicted by one fold model names a fold that is trained."""
    for experiment in EXPERIMENTS.values():
        chosen = experiment.prediction.fold_models
        if chosen != "all" and chosen not in TRAIN_CITIES:
            raise WorkflowError(
                f"ERROR: {experiment.path}: prediction.fold_models is all or a training "
                f"city ({', '.join(TRAIN_CITIES)}); got {chosen}"
            )


check_fold_models()


LABELLED_CITIES = sorted(c for c in SHEET["city"].unique() if c in config["labels"])


def scenes_of(city, split=None):
    rows = SHEET[SHEET["city"] == city]
    if split is not None:
        rows = rows[rows["split"] == split]
    return list(rows["scene"])


def stacks_used():
    """Whether a configured recipe reads the cities' temporal stacks (so the folds tile them)."""
    return any(get_recipe(recipe).kind == STACK for recipe in config["recipes"])


def input_scenes(city, kind, split=None):
    """A city's scenes of a kind: its acquisitions, or its temporal stack."""
    return [STACK] if kind == STACK else scenes_of(city, split)


def predicted_scenes(name, city):
    """What an experiment or ensemble predicts of a city: each acquisition, or its stack."""
    return input_scenes(city, input_kind(name))


def raster_path(city, scene):
    """The raster a scene name stands for: a 3-band acquisition, or the city's stack."""
    if scene == STACK:
        return f"results/stacks/{city}.tif"
    return f"results/rasters/{city}/{scene}.tif"


def scene_raster(wildcards):
    return raster_path(wildcards.city, wildcards.scene)


def scene_row(wildcards):
    return SHEET.loc[(wildcards.city, wildcards.scene)]


def city_split(city):
    return "train" if city in TRAIN_CITIES else "test"


# -------- Wildcard constraints ------------------------------------------------


def _alternatives(values):
    return "|".join(re.escape(v) for v in values) or "(?!)"


wildcard_constraints:
    city=_alternatives(SHEET["city"].unique()),
    scene=_alternatives([*SHEET["scene"].unique(), STACK]),
    fold=_alternatives([*TRAIN_CITIES, ALL_CITIES]),
    experiment=_alternatives([*EXPERIMENTS, *ENSEMBLES]),
    masks="masks|eval_masks",
    library="|".join(LIBRARIES),


# -------- Demo ----------------------------------------------------------------


def demo_outputs():
    """Raw files of the sheet and label files that live under the demo root."""
    root = Path(config["demo"]["root"])
    raw = [p for p in [*SHEET["vv"], *SHEET["vh"]] if Path(p).is_relative_to(root)]
    shapefiles = [p for p in config["labels"].values() if Path(p).is_relative_to(root)]
    sidecars = [
        str(Path(p).with_suffix(ext)) for p in shapefiles for ext in SHAPEFILE_SIDECARS
    ]
    return sorted(set(raw)) + shapefiles + sidecars


def demo_root(wildcards):
    return config["demo"]["root"]


# -------- Preparation: rasters, masks, tiles, folds ---------------------------


def raw_inputs(wildcards):
    row = scene_row(wildcards)
    return {"vv": row["vv"], "vh": row["vh"]}


def band_of(pol):
    def band(wildcards):
        value = scene_row(wildcards).get(f"{pol}_band", "")
        return int(value) if value else 1

    return band


SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj")


def labels_of(wildcards):
    return config["labels"][wildcards.city]


def label_sidecars(wildcards):
    """A shapefile's companion files, so that a changed or removed .prj makes masks stale.

    Those of a shapefile still to be made (the demo's) are all expected; of an existing one,
    those present (a missing .prj is then reported by the job, on one line).
    """
    path = Path(labels_of(wildcards))
    if path.suffix.lower() != ".shp":
        return []
    sidecars = [path.with_suffix(ext) for ext in SHAPEFILE_SIDECARS]
    return [str(s) for s in sidecars if s.exists() or not path.exists()]


def mask_all_touched(wildcards):
    """Training masks burn as masks.all_touched says, evaluation masks as evaluation.all_touched."""
    section = "masks" if wildcards.masks == "masks" else "evaluation"
    return config[section]["all_touched"]


def mask_trained_on(wildcards):
    """A training city's training mask: refused when no label falls on its valid pixels."""
    return wildcards.masks == "masks" and wildcards.city in TRAIN_CITIES


def evaluation_mask(city, scene):
    """The mask metrics are scored against: the training mask when both burn alike."""
    if config["evaluation"]["all_touched"] == config["masks"]["all_touched"]:
        return f"results/masks/{city}/{scene}.tif"
    return f"results/eval_masks/{city}/{scene}.tif"


def reference_mask(city):
    """The city's mask on its reference grid (that of its first acquisition and its stack)."""
    return evaluation_mask(city, scenes_of(city)[0])


def city_rasters(wildcards):
    """The city's 3-band rasters, its reference acquisition (first in sorted order) first."""
    return [
        f"results/rasters/{wildcards.city}/{scene}.tif"
        for scene in scenes_of(wildcards.city)
    ]


def training_scene_files(pattern):
    """The pattern for every training scene, and the training cities' stacks when used."""
    stacks = [STACK] if stacks_used() else []
    return [
        pattern.format(city=city, scene=scene)
        for city in TRAIN_CITIES
        for scene in scenes_of(city, "train") + stacks
    ]


def experiment_tiles(name):
    """The tile arrays (``images`` or ``masks``) of the rasters an experiment trains on."""

    def files(wildcards):
        kind = input_kind(wildcards.experiment)
        return [
            f"results/tiles/{city}/{scene}/{name}.npy"
            for city in TRAIN_CITIES
            for scene in input_scenes(city, kind, "train")
        ]

    return files


# -------- Training ------------------------------------------------------------


def experiment_gpus(wildcards):
    """GPUs a training job asks for: the experiment's devices unless it is pinned to the CPU."""
    experiment = EXPERIMENTS[wildcards.experiment]
    return 0 if experiment.accelerator == "cpu" else experiment.devices


def experiment_weights(wildcards):
    """The encoder weights file a training job starts from: none (random initialisation),
    the ImageNet weights fetched by fetch_weights, or the experiment's own file.
    """
    model = EXPERIMENTS[wildcards.experiment].model
    if model.encoder_weights != "imagenet":
        return [model.encoder_weights] if model.encoder_weights else []
    return [weights_file(model.architecture, model.encoder, "resources/weights")]


def start_model(wildcards):
    """The model of the same fold that a training job starts from, if its experiment says."""
    start = EXPERIMENTS[wildcards.experiment].start_from
    return [f"results/models/{start}/{wildcards.fold}/model.ckpt"] if start else []


def trained_folds():
    return TRAIN_CITIES + ([ALL_CITIES] if config["training"]["all_cities"] else [])


# -------- Delivery: prediction, cities, threshold, polygons, baselines, metrics, quicklooks ----


ENSEMBLE_DELIVERY = workflow_delivery(config)


def delivery_setting(key):
    """A delivery setting (aggregation, threshold, vote_threshold) of an experiment, its own
    or the config's, or of an ensemble (the config's)."""

    def setting(wildcards):
        experiment = EXPERIMENTS.get(wildcards.experiment)
        return getattr(experiment.delivery if experiment else ENSEMBLE_DELIVERY, key)

    return setting


def prediction_settings(wildcards):
    """An experiment's prediction settings, the config's merged in, as plain data."""
    return dataclasses.asdict(EXPERIMENTS[wildcards.experiment].prediction)


def prediction_encoding(wildcards):
    """How an experiment's scene predictions are stored: as logits when its city maps are
    their mean logit, else as probabilities."""
    logit = delivery_setting("aggregation")(wildcards) == "logit"
    return "logit" if logit else "probability"


def predicting_folds(wildcards):
    """Out of fold for a training city; for a test city every fold, or the one chosen."""
    if wildcards.city in TRAIN_CITIES:
        return [wildcards.city]
    chosen = EXPERIMENTS[wildcards.experiment].prediction.fold_models
    return TRAIN_CITIES if chosen == "all" else [chosen]


def fold_models(wildcards):
    models = EXPERIMENTS[wildcards.experiment].models
    return [
        f"results/models/{models}/{fold}/model.ckpt"
        for fold in predicting_folds(wildcards)
    ]


def fold_summaries(wildcards):
    return [
        f"results/folds/{fold}/summary.json" for fold in predicting_folds(wildcards)
    ]


def ensemble_members(wildcards):
    return [
        f"results/predictions/{member}/{wildcards.city}/{wildcards.scene}.tif"
        for member in ENSEMBLES[wildcards.experiment]
    ]


def city_predictions(wildcards):
    """The city's predictions, its reference acquisition (first in sorted order) first, or
    the prediction of its stack."""
    return [
        f"results/predictions/{wildcards.experiment}/{wildcards.city}/{scene}.tif"
        for scene in predicted_scenes(wildcards.experiment, wildcards.city)
    ]


def submission_extensions():
    if config["delivery"]["format"] == "gpkg":
        return [".gpkg"]
    return [".shp", ".shx", ".dbf", ".prj", ".cpg"]


def labelled_scene_files(pattern):
    return [
        pattern.format(city=city, scene=scene)
        for city in LABELLED_CITIES
        for scene in scenes_of(city)
    ]


def labelled_evaluation_masks():
    return [
        evaluation_mask(city, scene)
        for city in LABELLED_CITIES
        for scene in scenes_of(city)
    ]


def evaluation_scenes(wildcards):
    return [
        {
            "city": city,
            "scene": scene,
            "split": city_split(city),
            "prediction": f"results/predictions/{wildcards.experiment}/{city}/{scene}.tif",
            "mask": evaluation_mask(city, scene),
        }
        for city in LABELLED_CITIES
        for scene in predicted_scenes(wildcards.experiment, city)
    ]


def evaluated_predictions(wildcards):
    return [scene["prediction"] for scene in evaluation_scenes(wildcards)]


def evaluated_masks(wildcards):
    return [scene["mask"] for scene in evaluation_scenes(wildcards)]


def evaluation_cities(wildcards):
    return [
        {
            "city": city,
            "split": city_split(city),
            "probability": f"results/cities/{wildcards.experiment}/{city}.tif",
            "mask": reference_mask(city),
        }
        for city in LABELLED_CITIES
    ]


def baseline_scenes():
    return [
        {
            "city": city,
            "scene": scene,
            "split": city_split(city),
            "raster": f"results/rasters/{city}/{scene}.tif",
            "mask": evaluation_mask(city, scene),
        }
        for city in LABELLED_CITIES
        for scene in scenes_of(city)
    ]


def baseline_cities():
    """Labelled cities with their temporal stack and reference evaluation mask."""
    return [
        {
            "city": city,
            "split": city_split(city),
            "stack": f"results/stacks/{city}.tif",
            "mask": reference_mask(city),
        }
        for city in LABELLED_CITIES
    ]


def delivered_names():
    """Every active experiment and ensemble: each gets cities, shapefiles and metrics."""
    return [*config["experiments"], *ENSEMBLES]


def check_quicklooks():
    """Quicklooks are drawn of delivered experiments and ensembles only."""
    if config["quicklooks"] == "all":
        return
    for name in config["quicklooks"]:
        if name not in delivered_names():
            raise WorkflowError(
                f"ERROR: {CONFIG_FILE}: quicklooks names {name}, which is neither an active "
                "experiment nor an ensemble"
            )


check_quicklooks()


def delivered_kinds():
    return {
        name: "ensemble" if name in ENSEMBLES else "experiment"
        for name in delivered_names()
    }


def leaderboard_settings():
    """What distinguishes each delivered experiment and ensemble in the leaderboard."""
    experiments = {
        name: experiment_settings(EXPERIMENTS[name]) for name in config["experiments"]
    }
    ensembles = {
        name: ensemble_settings({m: experiments[m] for m in members}, ENSEMBLE_DELIVERY)
        for name, members in ENSEMBLES.items()
    }
    return {**experiments, **ensembles}


def labelled_city_facts():
    """Split and number of acquisitions of each labelled city, for the table per city."""
    return {
        city: {"split": city_split(city), "acquisitions": len(scenes_of(city))}
        for city in LABELLED_CITIES
    }


def delivered_summaries():
    return [f"results/evaluation/{name}/summary.json" for name in delivered_names()]


def quicklook_inputs(wildcards):
    experiment, city, scene = wildcards.experiment, wildcards.city, wildcards.scene
    inputs = {
        "raster": raster_path(city, scene),
        "prediction": f"results/predictions/{experiment}/{city}/{scene}.tif",
        "threshold": f"results/thresholds/{experiment}.json",
    }
    if city in LABELLED_CITIES:
        inputs["mask"] = evaluation_mask(city, scene)
        inputs["metrics"] = f"results/evaluation/{experiment}/scenes.tsv"
    return inputs


# -------- Targets -------------------------------------------------------------


def all_targets():
    folds = expand("results/folds/{fold}/summary.json", fold=TRAIN_CITIES)
    models = expand(
        "results/models/{experiment}/{fold}/model.ckpt",
        experiment=sorted({EXPERIMENTS[name].models for name in config["experiments"]}),
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
    rasters += expand("results/stacks/{city}.tif", city=sorted(SHEET["city"].unique()))
    test_cities = sorted(set(SHEET.loc[SHEET["split"] == "test", "city"]))
    delivery = ["results/evaluation/leaderboard.tsv"]
    for experiment in delivered_names():
        delivery += expand(
            "results/submission/{experiment}/{city}{ext}",
            experiment=experiment,
            city=test_cities,
            ext=submission_extensions()[:1],
        )
        delivery.append(f"results/evaluation/{experiment}/summary.json")
        delivery += [
            f"results/quicklooks/{experiment}/{city}/{scene}.png"
            for city in sorted(SHEET["city"].unique())
            for scene in predicted_scenes(experiment, city)
            if config["quicklooks"] == "all" or experiment in config["quicklooks"]
        ]
    return folds + masks + rasters + models + delivery
