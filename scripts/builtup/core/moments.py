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
        """Add samples given as (channels, n).

        One pass over float64 samples (faster than centring the float32 samples on their
        mean first): they are shifted by their first value, so the sum of squares does
        not cancel when the mean dwarfs the spread.
        """
        n = values.shape[1]
        if n == 0:
            return
        shifted = values.astype(np.float64)
        shift = shifted[:, 0].copy()
        shifted -= shift[:, None]
        sums = shifted.sum(axis=1)
        squares = np.einsum("ij,ij->i", shifted, shifted)
        m2 = np.maximum(squares - sums * sums / n, 0.0)
        self.merge(Moments(self.channels, n, shift + sums / n, m2))

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

    def channel(self, index: int) -> Moments:
        return Moments(1, self.count, self.mean[index : index + 1], self.m2[index : index + 1])

    @classmethod
    def stack(cls, parts: list[Moments]) -> Moments:
        """Moments of several channels over the same samples, from one Moments per channel."""
        if len({part.count for part in parts}) > 1:
            raise ValueError("cannot stack moments of different sample counts")
        return cls(
            sum(part.channels for part in parts),
            parts[0].count,
            np.concatenate([part.mean for part in parts]),
            np.concatenate([part.m2 for part in parts]),
        )

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.count) if self.count else np.zeros(self.channels)

    def to_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Moments:
        return cls(len(data["mean"]), data["count"], data["mean"], data["m2"])
