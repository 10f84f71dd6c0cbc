"""The temporal stack of a city: statistics against numpy, on a warped grid too."""

import numpy as np
import pytest
import rasterio
from affine import Affine

from builtup.core.bands import STACK_BANDS
from builtup.core.errors import InputError
from builtup.prepare.temporal import orbit_of, temporal_stack

from conftest import ORIGIN, write_raster

SHAPE = (40, 60)


def acquisition(path, rng, transform=ORIGIN, nodata_cols=0):
    vv = rng.gamma(4.4, 0.1 / 4.4, SHAPE).astype("float32")
    vh = rng.gamma(4.4, 0.02 / 4.4, SHAPE).astype("float32")
    image = np.stack([vh, vv, (vh + vv) / 2])
    image[:, :, :nodata_cols] = 0
    return write_raster(path, image, transform=transform)


def read_stack(path):
    with rasterio.open(path) as src:
        assert src.descriptions == STACK_BANDS and src.dtypes[0] == "float32"
        return dict(zip(STACK_BANDS, src.read(), strict=True)), src.transform


def db(values):
    return 10 * np.log10(np.maximum(values, 1e-10))


def test_statistics_against_numpy_with_a_warped_acquisition(tmp_path, rng):
    a = acquisition(tmp_path / "a.tif", rng, nodata_cols=5)
    b = acquisition(tmp_path / "b.tif", rng)
    shifted = Affine(10, 0, ORIGIN.c + 20, 0, -10, ORIGIN.f)  # exactly 2 px east
    c = acquisition(tmp_path / "c.tif", rng, transform=shifted)
    out = tmp_path / "stack.tif"
    temporal_stack([a, b, c], ["DES", "ASC", "DES"], out)
    stack, transform = read_stack(out)
    assert transform == ORIGIN

    def bands(path, shift=0):
        with rasterio.open(path) as src:
            data = src.read().astype(np.float64)
        moved = np.zeros_like(data)
        moved[:, :, shift:] = data[:, :, : data.shape[2] - shift]
        return moved

    layers = [bands(a), bands(b), bands(c, shift=2)]
    valid = np.stack([layer[0] != 0 for layer in layers])
    for pol, band in (("vh", 0), ("vv", 1)):
        values = np.ma.masked_array(np.stack([db(layer[band]) for layer in layers]), ~valid)
        np.testing.assert_allclose(stack[f"{pol}_mean"], values.mean(0).filled(np.nan), rtol=1e-5)
        np.testing.assert_allclose(stack[f"{pol}_std"], values.std(0).filled(np.nan), atol=1e-4)
        np.testing.assert_allclose(stack[f"{pol}_min"], values.min(0).filled(np.nan), rtol=1e-5)
        np.testing.assert_allclose(stack[f"{pol}_max"], values.max(0).filled(np.nan), rtol=1e-5)
        descending = values[[0, 2]].mean(0).filled(np.nan)
        np.testing.assert_allclose(stack[f"{pol}_mean_des"], descending, rtol=1e-5)
        ascending = np.where(valid[1], db(layers[1][band]), np.nan)
        np.testing.assert_allclose(stack[f"{pol}_mean_asc"], ascending, rtol=1e-5)
    np.testing.assert_array_equal(stack["count"], valid.sum(0))
    assert stack["count"][:, :2].max() == 1  # only b has data in a's and c's gap
    assert stack["count"][:, 5:].min() == 3


def test_statistics_do_not_grow_with_the_acquisition_count(tmp_path, rng):
    a = acquisition(tmp_path / "a.tif", rng)
    b = acquisition(tmp_path / "b.tif", rng)
    temporal_stack([a, b], ["ASC", "DES"], tmp_path / "two.tif")
    temporal_stack([a, b, a, b, a, b, a, b], ["ASC", "DES"] * 4, tmp_path / "eight.tif")
    two, _ = read_stack(tmp_path / "two.tif")
    eight, _ = read_stack(tmp_path / "eight.tif")
    for name in STACK_BANDS:
        if name != "count":
            np.testing.assert_allclose(eight[name], two[name], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(eight["count"], 4 * two["count"])


def test_a_single_acquisition_has_zero_spread(tmp_path, rng):
    a = acquisition(tmp_path / "a.tif", rng, nodata_cols=3)
    temporal_stack([a], [None], tmp_path / "one.tif")
    stack, _ = read_stack(tmp_path / "one.tif")
    data = stack["vv_mean"][:, 3:]
    assert np.isfinite(data).all() and (stack["vv_std"][:, 3:] == 0).all()
    np.testing.assert_array_equal(stack["vv_min"][:, 3:], data)
    np.testing.assert_array_equal(stack["vv_max"][:, 3:], data)
    assert np.isnan(stack["vv_mean_asc"]).all() and np.isnan(stack["vh_mean_des"]).all()
    without_data = np.stack([band[:, :3] for band in stack.values()])
    assert np.isnan(without_data).all()  # every band, the count too, is nodata there


def test_acquisitions_that_do_not_overlap_are_refused(tmp_path, rng):
    a = acquisition(tmp_path / "a.tif", rng)
    far = Affine(10, 0, ORIGIN.c + 50_000, 0, -10, ORIGIN.f)
    b = acquisition(tmp_path / "b.tif", rng, transform=far)
    with pytest.raises(InputError, match="does not overlap") as err:
        temporal_stack([a, b], ["ASC", "DES"], tmp_path / "s.tif")
    assert "\n" not in str(err.value) and not (tmp_path / "s.tif").exists()


@pytest.mark.parametrize(
    "scene, orbit",
    [("20150108_DES", "DES"), ("20150207_DES_1", "DES"), ("20150120_ASC", "ASC"), ("s1", None)],
)
def test_orbit_of_a_scene_name(scene, orbit):
    assert orbit_of(scene) == orbit
