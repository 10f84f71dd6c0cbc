"""The confusion matrix of a batch on its device (scores from it: :mod:`builtup.core.scores`)."""

from __future__ import annotations

import torch

from builtup.core.classes import IGNORE


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, classes: int = 2) -> torch.Tensor:
    """(classes, classes) int64 counts of (truth, prediction), pixels labelled 255 left out."""
    keep = target != IGNORE
    index = target[keep].long() * classes + pred[keep].long()
    return torch.bincount(index, minlength=classes * classes).reshape(classes, classes)
