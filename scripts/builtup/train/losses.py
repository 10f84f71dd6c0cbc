"""Losses of 2-class logits (B, C, H, W) against targets (B, H, W); 255 is ignored by all.

Cross-entropy is torch's; Dice, focal, Lovasz and Tversky are smp's. Only the 3rd place's softmax
Jaccard is our own: its exact definition (intersection and union summed per sample and class,
then averaged, no smoothing) is what the 3rd place's experiments were tuned with.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from builtup.config.experiment import LossTerm
from builtup.core.classes import IGNORE


def _probs_and_onehot(logits: torch.Tensor, target: torch.Tensor):
    """Softmax probabilities and one-hot targets, both zeroed where the target is ignored."""
    valid = (target != IGNORE).unsqueeze(1)
    probs = logits.float().softmax(dim=1) * valid
    onehot = F.one_hot(torch.where(valid.squeeze(1), target, 0).long(), logits.shape[1])
    return probs, onehot.permute(0, 3, 1, 2).float() * valid


class CrossEntropy(nn.Module):
    def __init__(self, class_weights: list[float] | None = None):
        super().__init__()
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights)

    def forward(self, logits, target):
        return F.cross_entropy(
            logits.float(), target.long(), weight=self.class_weights, ignore_index=IGNORE
        )


class SoftmaxJaccard(nn.Module):
    """The 3rd place's soft Jaccard: I and U summed per sample and class, averaged, 1 - I / U."""

    def forward(self, logits, target):
        probs, onehot = _probs_and_onehot(logits, target)
        intersection = (probs * onehot).sum(dim=(2, 3))
        union = (probs + onehot - probs * onehot).sum(dim=(2, 3)) + 1e-10
        return 1.0 - intersection.mean() / union.mean()


class LibraryLoss(nn.Module):
    """An smp loss in multiclass mode, ignoring 255, on float32 logits (autocast-safe)."""

    def __init__(self, loss_class, **options):
        super().__init__()
        self.loss = loss_class(mode="multiclass", ignore_index=IGNORE, **options)

    def forward(self, logits, target):
        return self.loss(logits.float(), target.long())


LOSSES = {
    "ce": CrossEntropy,
    "jaccard": SoftmaxJaccard,
    "dice": partial(LibraryLoss, smp.losses.DiceLoss),
    "focal": partial(LibraryLoss, smp.losses.FocalLoss),
    "lovasz": partial(LibraryLoss, smp.losses.LovaszLoss),
    "tversky": partial(LibraryLoss, smp.losses.TverskyLoss),
}


class WeightedSum(nn.Module):
    """sum of weight_i * loss_i over an experiment's loss terms."""

    def __init__(self, terms: Sequence[LossTerm]):
        super().__init__()
        self.weights = [float(t.weight) for t in terms]
        self.losses = nn.ModuleList(build_term(t) for t in terms)

    def forward(self, logits, target):
        return sum(
            w * loss(logits, target) for w, loss in zip(self.weights, self.losses, strict=True)
        )


def build_term(term: LossTerm) -> nn.Module:
    try:
        cls = LOSSES[term.name]
    except KeyError:
        raise ValueError(f"unknown loss {term.name!r}; known: {', '.join(LOSSES)}") from None
    return cls(**term.options)
