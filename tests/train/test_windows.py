"""Training from scene windows: pixel-exact reads, exact position statistics, sampling."""

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from builtup.core.classes import BUILTUP, IGNORE
from builtup.core.errors import InputError
from builtup.prepare.tiles import TileMosaic, TileSet, cut_tiles, tile_pieces
from builtup.train.data import TargetWeightedSampler
from builtup.train.windows import CELL, SceneWindowDataset, window_positions

from conftest import write_raster

HEIGHT, WIDTH = 300, 360  # not multiples of the tile size, nor of the cell


@pytest.fixture
def scene(tmp_path, rng):
    """A scene with a nodata corner and a few built-up blocks, cut into 128 px tiles."""
    image = rng.gamma(2.0, 0.05, (3, HEIGHT, WIDTH)).astype(np.float32)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[40:60, 200:230] = BUILTUP
    mask[250:270, 20:30] = BUILTUP
    image[:, :160, :150] = 0.0  # nodata: 0 in every band
    mask[:160, :150] = IGNORE
    raster = write_raster(tmp_path / "scene.tif", image)
    labels = write_raster(tmp_path / "mask.tif", mask, dtype="uint8", nodata=IGNORE)
    tiles = TileSet.in_folder(tmp_path / "tiles" / "c" / "s")
    cut_tiles(raster, labels, tiles, 128, 16)
    return raster, labels, tiles


def brute_force(mask: np.ndarray, size: int):
    positions, built = [], []
    for row in range(0, HEIGHT - size + 1, CELL):
        for col in range(0, WIDTH - size + 1, CELL):
            window = mask[row : row + size, col : col + size]
            if (window != IGNORE).any():
                positions.append((row, col))
                built.append((window == BUILTUP).any())
    return np.array(positions), np.array(built)


def test_tile_pieces_cover_the_span_once():
    pieces = tile_pieces([0, 112, 224], 100, 200)
    assert pieces == [(0, 100, 112), (1, 112, 224), (2, 224, 300)]


@pytest.mark.parametrize("size", [32, 96, 200, 300])
def test_a_window_of_any_size_reads_the_scenes_pixels(scene, rng, size):
    raster, labels, tiles = scene
    mosaic = TileMosaic(tiles)
    assert (mosaic.height, mosaic.width) == (HEIGHT, WIDTH)
    with rasterio.open(raster) as src, rasterio.open(labels) as lab:
        for _ in range(10):
            row, col = rng.integers(0, HEIGHT - size + 1), rng.integers(0, WIDTH - size + 1)
            image, mask = mosaic.read(row, col, size, size)
            window = Window(col, row, size, size)
            np.testing.assert_array_equal(image, src.read(window=window))
            np.testing.assert_array_equal(mask, lab.read(1, window=window))
    with pytest.raises(ValueError, match="outside"):
        mosaic.read(HEIGHT - size + 1, 0, size, size)


@pytest.mark.parametrize("size", [64, 128, 288])
def test_positions_are_exact_and_never_all_nodata(scene, size):
    _, labels, tiles = scene
    with rasterio.open(labels) as lab:
        mask = lab.read(1)
    positions, built = window_positions(TileMosaic(tiles), size)
    expected_positions, expected_built = brute_force(mask, size)
    np.testing.assert_array_equal(positions, expected_positions)
    np.testing.assert_array_equal(built, expected_built)
    grid = ((HEIGHT - size) // CELL + 1) * ((WIDTH - size) // CELL + 1)
    if size <= 128:  # small windows fit inside the 160 x 150 px nodata corner: left out
        assert len(positions) < grid


def test_drawn_windows_follow_the_sampler_weights_and_hold_data(scene):
    *_, tiles = scene
    dataset = SceneWindowDataset({("c", "s"): tiles}, 64, "linear3", [0.0] * 3, [1.0] * 3)
    sampler = TargetWeightedSampler(dataset.has_target, 0.7, 0.3, num_samples=100_000, seed=5)
    draws = np.fromiter(iter(sampler), int)
    with_target = dataset.has_target.sum()
    expected = 0.7 * with_target / (0.7 * with_target + 0.3 * (~dataset.has_target).sum())
    assert dataset.has_target[draws].mean() == pytest.approx(expected, abs=0.01)
    for index in draws[:200]:
        image, mask = dataset.read(index)
        assert (mask != IGNORE).any() and image.shape == (3, 64, 64)
        assert ((mask == BUILTUP).any()) == dataset.has_target[index]
    x, y = dataset[int(draws[0])]
    assert x.shape == (64, 64, 3) and y.shape == (64, 64)
    # one epoch: the windows that tile the scene side by side
    assert dataset.epoch_length == 5 * 6


def test_the_same_seed_draws_the_same_windows(scene):
    *_, tiles = scene

    def draws(seed, rank=0, world_size=1):
        dataset = SceneWindowDataset({("c", "s"): tiles}, 96, "db3", [0.0] * 3, [1.0] * 3)
        sampler = TargetWeightedSampler(
            dataset.has_target, 0.5, 0.5, 40, seed=seed, rank=rank, world_size=world_size
        )
        return [tuple(dataset.positions[i]) for i in sampler]

    assert draws(1) == draws(1) and draws(1) != draws(2)
    assert draws(1, 0, 2) + draws(1, 1, 2) != [] and draws(1, 0, 2) == draws(1)[0::2]


def test_scene_windows_refuse_a_window_larger_than_a_scene_and_an_empty_scene(tmp_path, scene):
    *_, tiles = scene
    with pytest.raises(InputError, match="smaller than a training window"):
        SceneWindowDataset({("c", "s"): tiles}, 320, "linear3", [0.0] * 3, [1.0] * 3)
    empty = write_raster(tmp_path / "empty.tif", np.zeros((3, 128, 128), np.float32))
    empty_mask = write_raster(
        tmp_path / "empty_mask.tif", np.full((128, 128), IGNORE), dtype="uint8", nodata=IGNORE
    )
    blank = TileSet.in_folder(tmp_path / "blank")
    blank.images.parent.mkdir()
    cut_tiles(empty, empty_mask, blank, 128, 0)
    with pytest.raises(InputError, match="no training window holds data"):
        SceneWindowDataset({("c", "e"): blank}, 64, "linear3", [0.0] * 3, [1.0] * 3)
