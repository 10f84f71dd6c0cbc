"""Pictures for people: percentile stretch, prediction overlays, and the five-panel row
[image, image + prediction, prediction, image + label, label] of samples and quicklooks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from builtup.core.classes import IGNORE  # noqa: E402
from builtup.core.rasters import atomic_path  # noqa: E402

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


def save_figure(fig, out_path) -> None:
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
