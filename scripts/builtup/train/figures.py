"""Training figures: curves of the per-epoch table and validation samples with their IoU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from builtup.core.classes import IGNORE
from builtup.core.scores import scores
from builtup.figures.panels import plt, sample_row, save_figure, stretch
from builtup.train.metrics import confusion_matrix


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
            drawn = table[["epoch", column]].dropna()  # validation figures: validated epochs
            ax.plot(drawn["epoch"] + 1, drawn[column], marker="o", ms=3, label=column)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if columns:
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_path)


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
    save_figure(fig, out_path)
