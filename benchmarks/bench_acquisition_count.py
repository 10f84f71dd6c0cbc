"""A city's score against the number of its acquisitions that an experiment is given.

In a finished run (``results/`` of ``make run`` or of ``bench_variants.py``), the city map of
one city is made again from only its first k acquisitions, for each k of ``--counts``, with
the models the run scored it with (a training city: the fold model that held it out; a test
city: the fold models the experiment predicts test cities with) and scored at the run's own
threshold for it, against its evaluation mask. A model that fuses acquisitions (or a stack
statistics model) predicts a stack of those k acquisitions; a per-acquisition model's
predictions of those k are aggregated as the run aggregates them. With k = all, the figures
are the run's own (``results/evaluation/cities.tsv``): a score that moves with k is the
count's doing, one that does not is the model's. Usage::

    python benchmarks/bench_acquisition_count.py --run /tmp/variants/mixed \\
        --experiment fusion_demo --city 38SLF_Mosul [--counts 2 3 4 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

from builtup.config.experiment import Experiment, read_experiment
from builtup.config.workflow import check_config
from builtup.config.yamlfile import read_yaml
from builtup.core.bands import STACK, STACK_POLARISATIONS, stack_descriptions, stacked_scenes
from builtup.core.errors import InputError
from builtup.core.probability import ENCODINGS, PROB_SCALE, threshold_level
from builtup.core.scores import scores
from builtup.deliver.threshold import (
    best_probability_threshold,
    confusion_at,
    probability_histograms,
)
from builtup.predict.aggregate import aggregate_city
from builtup.predict.scene import predict_scene


class Run:
    """What a finished run holds for one experiment."""

    def __init__(self, root: Path, name: str):
        self.root = root
        try:
            path = root / "config/config.yaml"
            config = check_config(read_yaml(path, "config file of the run"), str(path))
            self.experiment: Experiment = read_experiment(
                root / f"config/experiments/{name}.yaml", config
            )
        except InputError as err:
            sys.exit(str(err))
        thresholds = root / f"results/thresholds/{name}.json"
        if not thresholds.exists():
            sys.exit(f"{thresholds} is missing: run the workflow for {name} first")
        self.thresholds = json.loads(thresholds.read_text())
        self.cities = sorted(p.stem for p in (root / "results/cities" / name).glob("*.tif"))

    def split(self, city: str) -> str:
        return "train" if city in self.thresholds["out_of_fold"] else "test"

    def threshold(self, city: str) -> float:
        if self.split(city) == "train":
            return self.thresholds["out_of_fold"][city]
        return self.thresholds["threshold"]

    def folds(self, city: str) -> list[str]:
        if self.split(city) == "train":
            return [city]
        chosen = self.experiment.prediction.fold_models
        return sorted(self.thresholds["out_of_fold"]) if chosen == "all" else [chosen]

    def mask(self, city: str, reference_scene: str) -> Path:
        """The city's evaluation mask (on its reference acquisition's grid)."""
        for folder in ("eval_masks", "masks"):
            path = self.root / "results" / folder / city / f"{reference_scene}.tif"
            if path.exists():
                return path
        sys.exit(f"no mask of {city} under {self.root / 'results'}")

    def predictions(self, city: str) -> list[Path]:
        folder = self.root / "results/predictions" / self.experiment.name / city
        return sorted(folder.glob("*.tif"))


def stack_of_first(stack: Path, count: int, out: Path) -> Path:
    """A copy of a city's stack with its first ``count`` acquisitions only."""
    with rasterio.open(stack) as src:
        scenes = stacked_scenes(src.descriptions)[:count]
        bands = list(range(1, len(STACK_POLARISATIONS) * count + 1))
        with rasterio.open(out, "w", **{**src.profile, "count": len(bands)}) as dst:
            dst.write(src.read(bands))
            dst.descriptions = stack_descriptions(scenes)
    return out


def stack_acquisitions(stack: Path) -> list[str]:
    with rasterio.open(stack) as src:
        return stacked_scenes(src.descriptions)


def city_map_from_first(run: Run, city: str, count: int, folder: Path) -> Path:
    """The city map made from its first ``count`` acquisitions, as the run makes it."""
    experiment, delivery = run.experiment, run.experiment.delivery
    if experiment.kind == STACK:
        stack = stack_of_first(run.root / f"results/stacks/{city}.tif", count, folder / "in.tif")
        models = run.root / "results/models" / experiment.models
        predictions = [folder / "stack.tif"]
        predict_scene(
            stack,
            experiment,
            experiment.prediction,
            [models / fold / "model.ckpt" for fold in run.folds(city)],
            [run.root / f"results/folds/{fold}/summary.json" for fold in run.folds(city)],
            predictions[0],
            ENCODINGS["logit" if delivery.aggregation == "logit" else "probability"],
        )
    else:
        predictions = run.predictions(city)[:count]
    city_map = folder / "city.tif"
    aggregate_city(predictions, city_map, delivery.aggregation, delivery.vote_threshold)
    return city_map


def report(run: Run, city: str, counts: list[int]) -> None:
    if city not in run.cities:
        sys.exit(f"{run.experiment.name} has no map of {city}; its cities: {run.cities}")
    stacked = run.experiment.kind == STACK
    if stacked:
        scenes = stack_acquisitions(run.root / f"results/stacks/{city}.tif")
    else:
        scenes = [p.stem for p in run.predictions(city)]
    counts = counts or list(range(1, len(scenes) + 1))
    if max(counts) > len(scenes) or min(counts) < 1:
        sys.exit(f"{city} has {len(scenes)} acquisitions: counts go from 1 to {len(scenes)}")
    mask, threshold = run.mask(city, scenes[0]), run.threshold(city)
    print(f"{run.experiment.name} on {city} ({run.split(city)}, {len(scenes)} acquisitions),")
    print(f"scored at {threshold:.3f}, against {mask.relative_to(run.root)}\n")
    print("| acquisitions | F1 | precision | recall | best threshold | F1 there |", end="")
    print(" mean p built-up | mean p background |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    levels = np.arange(PROB_SCALE + 1) / PROB_SCALE
    for count in counts:
        with tempfile.TemporaryDirectory() as folder:
            hist = probability_histograms(city_map_from_first(run, city, count, Path(folder)), mask)
        at = scores(confusion_at(hist, threshold_level(threshold)))
        best, best_f1 = best_probability_threshold(hist)
        mean_p = (hist * levels).sum(axis=1) / np.maximum(hist.sum(axis=1), 1)
        print(
            f"| {count} | {at['f1']:.3f} | {at['precision']:.3f} | {at['recall']:.3f} "
            f"| {best:.3f} | {best_f1:.3f} | {mean_p[1]:.3f} | {mean_p[0]:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the run's working directory")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--city", required=True)
    parser.add_argument("--counts", type=int, nargs="*", help="default: 1 to all")
    args = parser.parse_args()
    report(Run(args.run.resolve(), args.experiment), args.city, args.counts)


if __name__ == "__main__":
    main()
