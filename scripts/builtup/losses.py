"""Losses of 2-class logits (B, C, H, W) against targets (B, H, W); 255 is ignored by all."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = 255


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
    """The seed's soft Jaccard: I and U summed per sample and class, averaged, 1 - I / U."""

    def forward(self, logits, target):
        probs, onehot = _probs_and_onehot(logits, target)
        intersection = (probs * onehot).sum(dim=(2, 3))
        union = (probs + onehot - probs * onehot).sum(dim=(2, 3)) + 1e-10
        return 1.0 - intersection.mean() / union.mean()


class Dice(nn.Module):
    """Soft Dice averaged over classes, counts summed over the batch."""

    def __init__(self, smooth: float = 1.0):
        super().__init__()
        self.smooth = smooth

    def forward(self, logits, target):
        probs, onehot = _probs_and_onehot(logits, target)
        intersection = (probs * onehot).sum(dim=(0, 2, 3))
        total = (probs + onehot).sum(dim=(0, 2, 3))
        return 1.0 - ((2 * intersection + self.smooth) / (total + self.smooth)).mean()


class Focal(nn.Module):
    """Focal loss (Lin et al. 2017): CE scaled by (1 - p_t)^gamma, mean over valid pixels."""

    def __init__(self, gamma: float = 2.0, class_weights: list[float] | None = None):
        super().__init__()
        self.gamma = gamma
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights)

    def forward(self, logits, target):
        valid = target != IGNORE
        safe = torch.where(valid, target, 0).long()
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.class_weights is not None:
            loss = loss * self.class_weights[safe]
        return loss[valid].mean() if valid.any() else logits.sum() * 0.0


class Lovasz(nn.Module):
    """Lovasz-softmax (Berman et al. 2018) over the valid pixels of the batch, classes present."""

    def forward(self, logits, target):
        probs = logits.float().softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
        labels = target.reshape(-1)
        valid = labels != IGNORE
        probs, labels = probs[valid], labels[valid].long()
        losses = []
        for c in range(probs.shape[1]):
            truth = (labels == c).float()
            if truth.sum() == 0:
                continue
            errors = (truth - probs[:, c]).abs()
            errors, order = errors.sort(descending=True)
            losses.append(torch.dot(errors, _lovasz_gradient(truth[order])))
        return torch.stack(losses).mean() if losses else logits.sum() * 0.0


def _lovasz_gradient(sorted_truth: torch.Tensor) -> torch.Tensor:
    total = sorted_truth.sum()
    intersection = total - sorted_truth.cumsum(0)
    union = total + (1 - sorted_truth).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


LOSSES = {
    "ce": CrossEntropy,
    "jaccard": SoftmaxJaccard,
    "dice": Dice,
    "focal": Focal,
    "lovasz": Lovasz,
}


class WeightedSum(nn.Module):
    """sum of weight_i * loss_i; ``terms`` are dicts of ``name``, ``weight`` and loss options."""

    def __init__(self, terms: list[dict]):
        super().__init__()
        self.weights = [float(t.get("weight", 1.0)) for t in terms]
        self.losses = nn.ModuleList(build_term(t) for t in terms)

    def forward(self, logits, target):
        return sum(
            w * loss(logits, target) for w, loss in zip(self.weights, self.losses, strict=True)
        )


def build_term(term: dict) -> nn.Module:
    options = {k: v for k, v in term.items() if k not in ("name", "weight")}
    try:
        cls = LOSSES[term["name"]]
    except KeyError:
        raise ValueError(f"unknown loss {term['name']!r}; known: {', '.join(LOSSES)}") from None
    return cls(**options)
