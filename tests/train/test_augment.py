"""The 3rd place's augmentation as the replicas spell it in albumentations 2."""

from collections import Counter

import numpy as np
import pytest

from builtup.train.augment import build_augmentation
from builtup.train.names import load_experiment

from conftest import REPO


def outcome(before: np.ndarray, after: np.ndarray) -> str:
    for name, moved in (
        ("identity", before),
        ("rot90", np.rot90(before, 1)),
        ("rot180", np.rot90(before, 2)),
        ("rot270", np.rot90(before, 3)),
        ("hflip", before[:, ::-1]),
        ("vflip", before[::-1, :]),
    ):
        if np.array_equal(after, moved):
            return name
    return "other"


@pytest.mark.parametrize("experiment", ["fpn_se_resnext50_db", "unet_resnet50"])
def test_the_seeds_rotate_or_flip_at_p_half(experiment):
    """A.OneOf([A.RandomRotate90(), A.Flip()]) at p 0.5, A.Flip being horizontal, vertical or
    both (a half turn) with equal odds, RandomRotate90 any of the 4 quarter turns."""
    settings = load_experiment(REPO / f"config/experiments/{experiment}.yaml")
    entries = [e for e in settings.augmentation if e["name"] != "RandomResizedCrop"]
    augmentation = build_augmentation(entries)
    augmentation.set_random_seed(3)
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    draws = 12000
    counts = Counter(
        outcome(image[..., 0], augmentation(image=image)["image"][..., 0]) for _ in range(draws)
    )
    quarter, flip = 0.5 * 0.5 / 4, 0.5 * 0.5 / 3
    expected = {
        "identity": 0.5 + quarter,
        "rot90": quarter,
        "rot180": quarter + flip,
        "rot270": quarter,
        "hflip": flip,
        "vflip": flip,
    }
    assert set(counts) == set(expected)
    for name, share in expected.items():
        assert counts[name] / draws == pytest.approx(share, abs=0.015), name
