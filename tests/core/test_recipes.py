import numpy as np
import pytest

from builtup.core.bands import SCENE, STACK
from builtup.core.moments import Moments
from builtup.core.recipes import CHANNELS, RECIPES, Recipe, get_recipe

SCENE_RECIPES = [r for r in RECIPES.values() if r.kind == SCENE]
STACK_RECIPES = [r for r in RECIPES.values() if r.kind == STACK and not r.series]


@pytest.fixture
def tile():
    x = np.array([[[0.01, 0.1], [1.0, 0.0]], [[0.1, 1.0], [10.0, 0.0]]], dtype=np.float32)
    x = np.concatenate([x, 0.5 * (x[:1] + x[1:2])])
    valid = np.array([[True, True], [True, False]])
    return x, valid


def test_channel_counts_match(tile):
    x, valid = tile
    for recipe in SCENE_RECIPES:
        out = recipe(x, valid)
        assert out.shape == (recipe.channels, 2, 2) and out.dtype == np.float32
        assert (out[:, ~valid] == 0).all()


def test_db_values_by_hand(tile):
    x, valid = tile
    out = get_recipe("db3")(x, valid)
    np.testing.assert_allclose(out[0, 0], [-20, -10], atol=1e-5)
    np.testing.assert_allclose(out[1, 1, 0], 10, atol=1e-5)


def test_db5_and_linear_extras_by_hand(tile):
    x, valid = tile
    db5 = get_recipe("db5")(x, valid)
    vh, vv = -20.0, -10.0  # pixel (0, 0)
    assert db5[3, 0, 0] == pytest.approx(vv * vh)
    assert db5[4, 0, 0] == pytest.approx((vv + 1) / (vh + 1))
    lin5 = get_recipe("linear5")(x, valid)
    assert lin5[3, 0, 0] == pytest.approx(0.1 - 0.01)
    assert lin5[4, 0, 0] == pytest.approx(np.hypot(0.01, 0.1))
    lin6 = get_recipe("linear6")(x, valid)
    assert lin6[3, 0, 0] == pytest.approx(0.001)
    assert lin6[4, 0, 0] == pytest.approx(0.11 / 0.02)
    assert lin6[5, 0, 0] == pytest.approx(np.hypot(0.01, 0.1))
    log_sq = get_recipe("log_sq3")(x, valid)
    assert log_sq[1, 0, 1] == pytest.approx(0.0, abs=1e-6)


def test_clipped_vv_vh_by_hand(tile):
    x, valid = tile
    out = get_recipe("vvvh_clip2")(x, valid)
    # band 0 is VH, band 1 VV: the recipe puts VV first, both clipped to [0, 2]
    np.testing.assert_allclose(out[0], [[0.1, 1.0], [2.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(out[1], [[0.01, 0.1], [1.0, 0.0]], atol=1e-7)


def test_minmax_pow_is_per_sample(tile):
    x, valid = tile
    out = get_recipe("minmax_pow3")(x, valid)
    assert out[0, 0, 0] == pytest.approx(-0.5)  # band minimum
    assert out[0, 1, 0] == pytest.approx(0.5)  # band maximum
    scaled = get_recipe("minmax_pow3")(x * 7, valid)
    np.testing.assert_allclose(out, scaled, atol=1e-6)


def test_negative_outliers_do_not_make_nan(tile):
    x, valid = tile
    x = x.copy()
    x[1, 0, 0] = -66.7
    for recipe in SCENE_RECIPES:
        assert np.isfinite(recipe(x, valid)).all(), recipe.name


def test_unknown_recipe():
    with pytest.raises(KeyError, match="unknown input recipe 'rgb'"):
        get_recipe("rgb")


def test_moments_merge_equals_numpy(rng):
    data = rng.normal(5, 3, (3, 10000))
    parts = np.array_split(data, 7, axis=1)
    merged = Moments(3)
    for part in parts:
        chunk = Moments(3)
        chunk.add(part)
        merged.merge(Moments.from_dict(chunk.to_dict()))
    np.testing.assert_allclose(merged.mean, data.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(merged.std, data.std(axis=1), rtol=1e-12)
    assert merged.count == 10000


def test_moments_float64_on_large_offsets(rng):
    data = (1e4 + rng.normal(0, 1e-2, (1, 100000))).astype(np.float32)
    acc = Moments(1)
    for part in np.array_split(data, 10, axis=1):
        acc.add(part)
    np.testing.assert_allclose(acc.std, data.astype(np.float64).std(axis=1), rtol=1e-6)


def test_moments_channels_split_and_stack(rng):
    data = rng.normal(2, 5, (3, 1000))
    whole = Moments(3)
    whole.add(data)
    parts = [whole.channel(i) for i in range(3)]
    assert [p.channels for p in parts] == [1, 1, 1]
    restacked = Moments.stack([parts[2], parts[0]])
    np.testing.assert_array_equal(restacked.mean, whole.mean[[2, 0]])
    np.testing.assert_array_equal(restacked.std, whole.std[[2, 0]])
    fewer = Moments(1)
    fewer.add(data[:1, :10])
    with pytest.raises(ValueError, match="different sample counts"):
        Moments.stack([parts[0], fewer])


def test_recipes_name_known_channels():
    for recipe in RECIPES.values():
        assert set(recipe.channel_names) <= set(CHANNELS[recipe.family]), recipe.name


@pytest.fixture
def stack_tile():
    """A 2 x 2 stack of three acquisitions (VV, VH in dB each): the third without data at
    (0, 1), none at (1, 1)."""
    vv = np.array(
        [[[-1, -2], [-3, np.nan]], [[-3, -4], [-5, np.nan]], [[-8, np.nan], [-7, np.nan]]]
    )
    x = np.stack([vv, vv - 7], axis=1).reshape(6, 2, 2).astype(np.float32)
    return x, np.array([[True, True], [True, False]])


def test_stack_recipes_by_hand(stack_tile):
    x, valid = stack_tile
    for recipe in STACK_RECIPES:
        out = recipe(x, valid)
        assert out.shape == (recipe.channels, 2, 2) and np.isfinite(out).all(), recipe.name
        assert (out[:, ~valid] == 0).all()
    mean = get_recipe("stack_mean")(x, valid)
    assert mean[:, 0, 0].tolist() == [-4.0, -11.0, 7.0]
    assert mean[0, 0, 1] == -3.0  # the two acquisitions with data there
    spread = get_recipe("stack_mean_std")(x, valid)[2]
    assert spread[0, 0] == pytest.approx(np.std([-1, -3, -8], ddof=1))
    assert spread[0, 1] == pytest.approx(np.std([-2, -4], ddof=1))
    every = get_recipe("stack_all")(x, valid)
    assert every.shape[0] == 8 and every[7, 0, 1] == -9.0  # vh max over two acquisitions


def test_a_series_recipe_keeps_the_acquisitions_apart(stack_tile):
    x, valid = stack_tile
    series = get_recipe("series_db2")
    assert series.channels == 2 and series.family == "series"
    out = series(x, valid)
    assert out.shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(out[:, 0, 0, 0], [-1, -3, -8])
    np.testing.assert_array_equal(out[:, 1, 0, 0], [-8, -10, -15])
    assert np.isnan(out[2, :, 0, 1]).all()  # the third acquisition has no data there
    assert (out[..., 1, 1] == 0).all()  # not valid


def test_a_recipe_reads_one_kind_of_raster():
    with pytest.raises(ValueError, match="a series reads a stack"):
        Recipe("series", ("vv_db",), SCENE, series=True)
    with pytest.raises(ValueError, match="no stack channel 'vv_db'"):
        Recipe("mixed", ("vv_mean", "vv_db"), STACK)
    with pytest.raises(ValueError, match="no scene channel 'vv_mean'"):
        Recipe("mixed", ("vv_db", "vv_mean"))
