"""Pictures for people: training curves and validation samples with their IoU."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402

from builtup.labels import IGNORE  # noqa: E402
from builtup.metrics import confusion_matrix, scores  # noqa: E402
from builtup.predict import read_probability  # noqa: E402
from builtup.rasters import atomic_path  # noqa: E402
from builtup.recipes import to_db  # noqa: E402

BUILTUP_RGBA = np.array([1.0, 0.15, 0.1, 0.45])


def stretch(band: np.ndarray, valid: np.ndarray | None = None, low=2, high=98) -> np.ndarray:
    """Percentile stretch of a band to [0, 1] over its valid pixels."""
    values = band[valid] if valid is not None and valid.any() else band.ravel()
    lo, hi = np.percentile(values, [low, high]) if values.size else (0.0, 1.0)
    return np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1)


def overlay(gray: np.ndarray, binary: np.ndarray) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=2)
    alpha = BUILTUP_RGBA[3] * binary[..., None]
    return rgb * (1 - alpha) + BUILTUP_RGBA[:3] * alpha


def sample_row(axes, gray: np.ndarray, pred: np.ndarray, label: np.ndarray, title: str) -> None:
    """[image, image + prediction, prediction, image + label, label] on one row of axes."""
    shown = np.where(label == IGNORE, 0, label)
    panels = [gray, overlay(gray, pred == 1), pred, overlay(gray, shown == 1), shown]
    names = ["image", "image + prediction", "prediction", "image + label", "label"]
    for ax, panel, name in zip(axes, panels, names, strict=True):
        ax.imshow(panel, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    axes[0].set_title(f"{title}\nimage", fontsize=8)


def plot_curves(metrics_csv: str | Path, out_path: str | Path) -> None:
    table = pd.read_csv(metrics_csv)
    groups = [
        ("loss", [c for c in table if c.endswith("loss")]),
        ("validation scores", [c for c in ("val/iou_1", "val/f1", "val/miou") if c in table]),
        ("learning rate", ["lr"]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, (title, columns) in zip(axes, groups, strict=True):
        for column in columns:
            ax.plot(table["epoch"] + 1, table[column], marker="o", ms=3, label=column)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if columns:
            ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out_path)


@torch.no_grad()
def plot_val_samples(task, dataset, out_path: str | Path, count: int) -> None:
    """The ``count`` tiles with the most built-up pixels, predicted by ``task``."""
    order = np.argsort(-np.asarray(dataset.has_target, float), kind="stable")[: max(count, 1)]
    task.eval()
    fig, axes = plt.subplots(len(order), 5, figsize=(12, 2.6 * len(order)), squeeze=False)
    for row, index in zip(axes, order, strict=True):
        x, y = dataset[int(index)]
        pred = task(x[None]).argmax(1)[0]
        iou = scores(confusion_matrix(pred, y.long()))["iou_1"]
        valid = (y != IGNORE).numpy()
        channel = 1 if x.shape[-1] > 1 else 0
        sample_row(
            row,
            stretch(x[..., channel].numpy(), valid),
            pred.numpy(),
            y.numpy(),
            f"tile {index}, IoU {iou:.3f}",
        )
    fig.tight_layout()
    _save(fig, out_path)


def _save(fig, out_path) -> None:
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def plot_quicklook(
    raster_path,
    prediction_path,
    threshold_path,
    out_path,
    mask_path=None,
    metrics_path=None,
    max_side: int = 1024,
):
    """[image, image + prediction, prediction, image + label, label] of a whole scene, at the
    delivery threshold, titled with the scene's F1 from the metrics table."""
    with rasterio.open(raster_path) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / max_side)))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        vv = src.read(2, out_shape=shape)
    with rasterio.open(prediction_path) as src:
        prob, valid = read_probability(src, out_shape=shape)
    threshold = json.loads(Path(threshold_path).read_text())["threshold"]
    pred = (valid & (prob >= threshold)).astype(np.uint8)
    city, scene = Path(prediction_path).parent.name, Path(prediction_path).stem
    name = f"{city}/{scene}, threshold {threshold:.3f}"
    if mask_path:
        with rasterio.open(mask_path) as src:
            label = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        title = f"{name}, F1 {scene_f1(metrics_path, city, scene):.3f}"
    else:
        label = np.where(valid, 0, IGNORE).astype(np.uint8)
        title = f"{name} (no label)"
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.6))
    sample_row(axes, stretch(to_db(vv), vv != 0), pred, label, title)
    fig.tight_layout()
    _save(fig, out_path)


def scene_f1(metrics_path, city: str, scene: str) -> float:
    """The scene's F1 in the experiment's ``scenes.tsv`` (full resolution)."""
    table = pd.read_csv(metrics_path, sep="\t", dtype={"scene": str})
    row = table[(table["city"] == city) & (table["scene"] == scene)]
    return float(row["f1"].iloc[0]) if len(row) else float("nan")
