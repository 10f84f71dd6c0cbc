"""Quicklooks: a whole scene's five panels at the delivery threshold, with its F1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.enums import Resampling

from builtup.core.bands import STACK, raster_kind
from builtup.core.classes import IGNORE
from builtup.core.probability import read_probability
from builtup.core.recipes import get_recipe, to_db
from builtup.figures.panels import plt, sample_row, save_figure, stretch


def plot_quicklook(
    raster_path,
    prediction_path,
    threshold_path,
    out_path,
    mask_path=None,
    metrics_path=None,
    max_side: int = 1024,
):
    """[image, image + prediction, prediction, image + label, label] of a whole scene (or a
    city's temporal stack) at the threshold its metrics use (a training city's out-of-fold
    one, else the delivery threshold), titled with the scene's F1 from the metrics table."""
    with rasterio.open(raster_path) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / max_side)))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        image, image_valid = vv_db(src, shape)
    with rasterio.open(prediction_path) as src:
        prob, valid = read_probability(src, out_shape=shape)
    city, scene = Path(prediction_path).parent.name, Path(prediction_path).stem
    thresholds = json.loads(Path(threshold_path).read_text())
    # a training city at its out-of-fold threshold, as its metrics score it
    threshold = thresholds["out_of_fold"].get(city, thresholds["threshold"])
    pred = (valid & (prob >= threshold)).astype(np.uint8)
    name = f"{city}/{scene}, threshold {threshold:.3f}"
    if mask_path:
        with rasterio.open(mask_path) as src:
            label = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        title = f"{name}, F1 {scene_f1(metrics_path, city, scene):.3f}"
    else:
        label = np.where(valid, 0, IGNORE).astype(np.uint8)
        title = f"{name} (no label)"
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.6))
    sample_row(axes, stretch(image, image_valid), pred, label, title)
    fig.tight_layout()
    save_figure(fig, out_path)


def vv_db(src, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(VV in dB, valid) at ``shape``: the scene's VV, or a temporal stack's mean VV."""
    if raster_kind(src.descriptions) == STACK:
        bands = src.read(out_shape=(src.count, *shape))
        features = get_recipe("stack_mean").features(bands, np.ones(shape, bool))
        valid = features.count > 0
        return np.where(valid, features["vv_mean"], np.float32(0)), valid
    vv = src.read(2, out_shape=shape)
    return to_db(vv), vv != 0


def scene_f1(metrics_path, city: str, scene: str) -> float:
    """The scene's F1 in the experiment's ``scenes.tsv`` (full resolution)."""
    table = pd.read_csv(metrics_path, sep="\t", dtype={"scene": str})
    row = table[(table["city"] == city) & (table["scene"] == scene)]
    return float(row["f1"].iloc[0]) if len(row) else float("nan")
