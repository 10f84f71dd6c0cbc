import json

import numpy as np
import pytest

from builtup.core import recipes
from builtup.core.bands import SCENE, SCENE_BANDS, STACK
from builtup.core.errors import InputError
from builtup.core.moments import Moments
from builtup.core.recipes import RECIPES
from builtup.prepare import tile_stats as tile_stats_module
from builtup.prepare.folds import build_fold, fold_cities, write_fold
from builtup.prepare.tile_stats import SkipRules, read_statistics, tile_statistics, write_statistics
from builtup.prepare.tiles import TileSet, _write_npy_header
from builtup.train.data import fold_tiles


def write_tiles(folder, images, masks, size):
    folder.mkdir(parents=True)
    tiles = TileSet.in_folder(folder)
    for path, array in ((tiles.images, images), (tiles.masks, masks)):
        with open(path, "wb") as fh:
            _write_npy_header(fh, array.shape, array.dtype)
            fh.write(np.ascontiguousarray(array).tobytes())
    windows = [[i * size, 0, size, size] for i in range(len(images))]
    tiles.index.write_text(json.dumps({"windows": windows, "tile_size": size}))
    return tiles


@pytest.fixture
def crafted(tmp_path, rng):
    """Five tiles: normal, all nodata, constant, outlier, half nodata."""
    images = rng.uniform(0.01, 1, (5, 3, 8, 8)).astype(np.float32)
    masks = (rng.uniform(size=(5, 8, 8)) > 0.5).astype(np.uint8)
    masks[1] = 255
    images[1] = 0
    images[2] = 0.5
    images[3, 0, 0, 0] = -20000
    masks[4, :4] = 255
    images[4, :, :4] = 0
    return write_tiles(tmp_path / "t", images, masks, 8), images, masks


def test_tile_records_and_skip_reasons(crafted):
    tiles, images, masks = crafted
    table, _ = tile_statistics(tiles, "A_B", "s1", SkipRules())
    assert table["skip_reason"].tolist() == ["", "nodata", "constant", "outlier_min", ""]
    assert table["skip"].tolist() == [False, True, True, True, False]
    assert table.loc[4, "nodata_ratio"] == pytest.approx(0.5)
    valid = masks[4] != 255
    assert table.loc[4, "target_ratio"] == pytest.approx((masks[4][valid] == 1).mean())
    assert table.loc[4, "vv_mean"] == pytest.approx(images[4, 1][valid].mean(), rel=1e-6)
    assert table.loc[0, "vh_std"] == pytest.approx(images[0, 0].std(), rel=1e-5)
    strict = tile_statistics(tiles, "A_B", "s1", SkipRules(max_nodata_ratio=0.4, min_below=None))[0]
    assert strict["skip_reason"].tolist() == ["", "nodata", "constant", "", "nodata"]


def test_moments_cover_usable_tiles_only(crafted, tmp_path):
    tiles, images, masks = crafted
    table, moments = tile_statistics(tiles, "A_B", "s1", recipes=tuple(RECIPES))
    assert set(moments) == {name for name, r in RECIPES.items() if r.kind == SCENE}
    for name in moments:
        recipe = RECIPES[name]
        expected = Moments(recipe.channels)
        for i in (0, 4):
            valid = masks[i] != 255
            expected.add(recipe(images[i], valid)[:, valid])
        np.testing.assert_allclose(moments[name].mean, expected.mean, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(moments[name].std, expected.std, rtol=1e-9, err_msg=name)
        assert moments[name].count == expected.count
    write_statistics(table, moments, tmp_path / "s.tsv", tmp_path / "m.json")
    back = read_statistics(tmp_path / "s.tsv")
    assert back["skip_reason"].tolist()[:2] == ["", "nodata"]
    assert json.loads((tmp_path / "m.json").read_text())["db3"]["count"] == expected.count


def test_stack_tiles_give_the_stack_recipes_moments(tmp_path, rng):
    """A stack's tiles: three acquisitions' VV and VH in dB, NaN where an acquisition has no
    data (all of them in the second tile's left columns); only the stack and series recipes
    are summarised, a series over the pixels each acquisition has data at."""
    images = rng.normal(-12, 3, (2, 6, 8, 8)).astype(np.float32)
    images[0, 4:, :2] = np.nan  # the third acquisition: no data in the first rows
    masks = (rng.uniform(size=(2, 8, 8)) > 0.5).astype(np.uint8)
    masks[1, :, :3] = 255
    images[1, :, :, :3] = np.nan
    tiles = write_tiles(tmp_path / "stack", images, masks, 8)
    table, moments = tile_statistics(tiles, "A_B", STACK, recipes=tuple(RECIPES))
    assert set(moments) == {"stack_mean", "stack_mean_std", "stack_all", "series_db2"}
    assert not table["skip"].any()
    vv = images[1, 0::2, :, 3:].astype(np.float64)
    assert table.loc[1, "vv_std_mean"] == pytest.approx(vv.std(axis=0, ddof=1).mean(), rel=1e-5)
    for name, summary in moments.items():
        recipe = RECIPES[name]
        expected = Moments(recipe.channels)
        for image, mask in zip(images, masks, strict=True):
            valid = mask != 255
            out = recipe(image, valid)
            if recipe.series:
                present = ~np.isnan(out).any(axis=1) & valid
                expected.add(out.transpose(1, 0, 2, 3)[:, present])
            else:
                expected.add(out[:, valid])
        assert np.isfinite(summary.mean).all()
        np.testing.assert_allclose(summary.mean, expected.mean, rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(summary.std, expected.std, rtol=1e-9, err_msg=name)


def test_shared_channels_are_computed_once_per_tile(crafted, monkeypatch):
    tiles, _, _ = crafted
    calls: dict[str, int] = {}

    def counted(name, fn):
        def channel(features):
            calls[name] = calls.get(name, 0) + 1
            return fn(features)

        return channel

    counting = {
        family: {name: counted(name, fn) for name, fn in channels.items()}
        for family, channels in recipes.CHANNELS.items()
    }
    monkeypatch.setattr(recipes, "CHANNELS", counting)
    monkeypatch.setattr(tile_stats_module, "CHANNELS", counting)
    tile_statistics(tiles, "A_B", "s1", recipes=tuple(RECIPES))
    usable_tiles = 2
    scene_recipes = [r for r in RECIPES.values() if r.kind == SCENE]
    derived = {band for r in scene_recipes for band in r.channel_names} - set(SCENE_BANDS)
    assert set(calls) >= derived  # and the bands the derived channels are made from
    assert set(calls.values()) == {usable_tiles}


def city_tables(tmp_path, rng, cities):
    stats, moments = [], []
    for k, city in enumerate(cities):
        images = rng.uniform(0.01, 1 + k, (2, 3, 8, 8)).astype(np.float32)
        masks = np.zeros((2, 8, 8), np.uint8)
        tiles = write_tiles(tmp_path / city, images, masks, 8)
        table, mom = tile_statistics(tiles, city, "s", recipes=("linear3",))
        write_statistics(table, mom, tmp_path / f"{city}.tsv", tmp_path / f"{city}.json")
        stats.append(tmp_path / f"{city}.tsv")
        moments.append(tmp_path / f"{city}.json")
    return stats, moments


def test_fold_normalisation_uses_training_cities_only(tmp_path, rng):
    cities = ["A_a", "B_b", "C_c"]
    stats, moments = city_tables(tmp_path, rng, cities)
    tiles, summary = build_fold("B_b", cities, stats, moments)
    assert summary["train_cities"] == ["A_a", "C_c"] and summary["val_cities"] == ["B_b"]
    assert summary["train_tiles"] == 4 and summary["val_tiles"] == 2
    expected = Moments(3)
    for city in ("A_a", "C_c"):
        expected.merge(
            Moments.from_dict(json.loads((tmp_path / f"{city}.json").read_text())["linear3"])
        )
    np.testing.assert_allclose(summary["normalisation"]["linear3"]["mean"], expected.mean)
    np.testing.assert_allclose(summary["normalisation"]["linear3"]["std"], expected.std)
    assert set(tiles["role"]) == {"train", "val"}
    write_fold(tiles, summary, tmp_path / "f.tsv", tmp_path / "f.json")
    assert json.loads((tmp_path / "f.json").read_text())["fold"] == "B_b"


def test_a_fold_holds_scene_and_stack_tiles_each_with_its_recipes(tmp_path, rng):
    cities = ["A_a", "B_b", "C_c"]
    stats, moments = city_tables(tmp_path, rng, cities)
    for k, city in enumerate(cities):
        images = rng.normal(-10 - k, 2, (3, 4, 8, 8)).astype(np.float32)
        tiles = write_tiles(tmp_path / city / STACK, images, np.zeros((3, 8, 8), np.uint8), 8)
        table, mom = tile_statistics(tiles, city, STACK, recipes=("linear3", "stack_mean"))
        write_statistics(table, mom, tmp_path / f"{city}_st.tsv", tmp_path / f"{city}_st.json")
        stats.append(tmp_path / f"{city}_st.tsv")
        moments.append(tmp_path / f"{city}_st.json")
    tiles, summary = build_fold("B_b", cities, stats, moments)
    assert summary["tiles_by_kind"] == {
        SCENE: {"train": 4, "val": 2},
        STACK: {"train": 6, "val": 3},
    }
    assert summary["normalisation"]["linear3"]["pixels"] == 4 * 64
    assert summary["normalisation"]["stack_mean"]["pixels"] == 6 * 64
    write_fold(tiles, summary, tmp_path / "f.tsv", tmp_path / "f.json")
    stack_rows = fold_tiles(tmp_path / "f.tsv", "train", STACK)
    assert len(stack_rows) == 6 and set(stack_rows["scene"]) == {STACK}
    assert set(fold_tiles(tmp_path / "f.tsv", "val", SCENE)["scene"]) == {"s"}


def test_all_fold_and_unknown_fold(tmp_path, rng):
    assert fold_cities("all", ["A", "B"]) == (["A", "B"], [])
    with pytest.raises(ValueError, match="not a training city"):
        fold_cities("Z", ["A", "B"])


def test_fold_without_usable_tiles(tmp_path, rng):
    images = np.zeros((2, 3, 8, 8), np.float32)
    masks = np.full((2, 8, 8), 255, np.uint8)
    tiles = write_tiles(tmp_path / "A_a", images, masks, 8)
    table, mom = tile_statistics(tiles, "A_a", "s", recipes=("linear3",))
    write_statistics(table, mom, tmp_path / "a.tsv", tmp_path / "a.json")
    stats, moments = city_tables(tmp_path, rng, ["B_b"])
    with pytest.raises(InputError, match="no usable training tile"):
        build_fold(
            "B_b", ["A_a", "B_b"], [tmp_path / "a.tsv", *stats], [tmp_path / "a.json", *moments]
        )


def test_threads_change_nothing(tmp_path, rng):
    """Tiles summarised on several threads give the very same table and moments."""
    images = rng.gamma(2.0, 0.05, (23, 3, 16, 16)).astype(np.float32)
    masks = rng.choice(np.array([0, 1, 255], np.uint8), (23, 16, 16), p=[0.6, 0.3, 0.1])
    tiles = write_tiles(tmp_path / "t", images, masks, 16)
    recipes = ("db3", "linear6", "minmax_pow3")
    one = tile_statistics(tiles, "A_B", "s1", recipes=recipes, threads=1)
    three = tile_statistics(tiles, "A_B", "s1", recipes=recipes, threads=3)
    assert one[0].equals(three[0])
    for name in recipes:
        assert one[1][name].to_dict() == three[1][name].to_dict()


def test_a_channel_constant_over_the_fold_normalises_by_one(tmp_path, rng):
    """As the temporal std of single-acquisition stacks: 0 everywhere, never a division by 0."""
    stats, moments = [], []
    for city in ("A_a", "B_b"):
        images = rng.uniform(0.01, 1, (2, 3, 8, 8)).astype(np.float32)
        images[:, 0] = 0.25
        tiles = write_tiles(tmp_path / city, images, np.zeros((2, 8, 8), np.uint8), 8)
        table, mom = tile_statistics(tiles, city, "s", recipes=("linear3",))
        write_statistics(table, mom, tmp_path / f"{city}.tsv", tmp_path / f"{city}.json")
        stats.append(tmp_path / f"{city}.tsv")
        moments.append(tmp_path / f"{city}.json")
    _, summary = build_fold("B_b", ["A_a", "B_b"], stats, moments)
    norm = summary["normalisation"]["linear3"]
    assert norm["mean"][0] == 0.25 and norm["std"][0] == 1.0
    assert 0 < norm["std"][1] < 1
