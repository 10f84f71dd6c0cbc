"""Per-channel running mean and variance in float64, mergeable across tiles, scenes and cities."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Moments:
    """Count, mean and sum of squared deviations (M2) per channel (Chan et al. merge)."""

    channels: int
    count: float = 0.0
    mean: np.ndarray = field(default=None)
    m2: np.ndarray = field(default=None)

    def __post_init__(self):
        self.mean = np.zeros(self.channels) if self.mean is None else np.asarray(self.mean, float)
        self.m2 = np.zeros(self.channels) if self.m2 is None else np.asarray(self.m2, float)

    def add(self, values: np.ndarray) -> None:
        """Add samples given as (channels, n)."""
        n = values.shape[1]
        if n == 0:
            return
        # float64 accumulators over the (often float32) samples, without a float64 copy
        mean = values.sum(axis=1, dtype=np.float64) / n
        shift = mean.astype(values.dtype)
        centred = values - shift[:, None]
        m2 = np.einsum("ij,ij->i", centred, centred, dtype=np.float64)
        m2 -= n * (mean - shift) ** 2  # centred on the rounded mean, not the exact one
        self.merge(Moments(self.channels, n, mean, m2))

    def merge(self, other: Moments) -> None:
        if other.channels != self.channels:
            raise ValueError(f"cannot merge {other.channels} channels into {self.channels}")
        total = self.count + other.count
        if other.count == 0:
            return
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.count) if self.count else np.zeros(self.channels)

    def to_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Moments:
        return cls(len(data["mean"]), data["count"], data["mean"], data["m2"])
