"""The temporal stack of a city: its acquisitions in dB on the reference grid (a warped one
too), and the stack recipes' statistics over them against numpy."""

import numpy as np
import pytest
import rasterio
from affine import Affine

from builtup.core.bands import raster_kind, stack_descriptions, stacked_scenes
from builtup.core.errors import InputError
from builtup.core.recipes import get_recipe
from builtup.prepare.temporal import temporal_stack

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
        assert src.dtypes[0] == "float32" and raster_kind(src.descriptions) == "stack"
        return src.read(), src.descriptions, src.transform


def db(values):
    return 10 * np.log10(np.maximum(values, 1e-10))


def statistics(stack):
    """Every stack channel of a whole stack (all its acquisitions)."""
    features = get_recipe("stack_all").features(stack, ~np.isnan(stack).all(axis=0))
    names = [f"{p}_{s}" for p in ("vv", "vh") for s in ("mean", "std", "min", "max")]
    return {name: features[name] for name in [*names, "count"]}


def test_acquisitions_in_db_with_a_warped_one_and_their_statistics(tmp_path, rng):
    a = acquisition(tmp_path / "a.tif", rng, nodata_cols=5)
    b = acquisition(tmp_path / "b.tif", rng)
    shifted = Affine(10, 0, ORIGIN.c + 20, 0, -10, ORIGIN.f)  # exactly 2 px east
    c = acquisition(tmp_path / "c.tif", rng, transform=shifted)
    out = tmp_path / "stack.tif"
    temporal_stack([a, b, c], out)
    stack, descriptions, transform = read_stack(out)
    assert transform == ORIGIN and stacked_scenes(descriptions) == ["a", "b", "c"]
    assert descriptions == stack_descriptions(["a", "b", "c"])

    def bands(path, shift=0):
        with rasterio.open(path) as src:
            data = src.read().astype(np.float64)
        moved = np.zeros_like(data)
        moved[:, :, shift:] = data[:, :, : data.shape[2] - shift]
        return moved

    layers = [bands(a), bands(b), bands(c, shift=2)]
    valid = np.stack([layer[0] != 0 for layer in layers])
    for k, layer in enumerate(layers):  # VV, VH of each acquisition; NaN where it has none
        expected = np.where(valid[k], db(layer[[1, 0]]), np.nan)
        np.testing.assert_allclose(stack[2 * k : 2 * k + 2], expected, rtol=1e-5)
    stats = statistics(stack)
    for pol, band in (("vh", 0), ("vv", 1)):
        values = np.ma.masked_array(np.stack([db(layer[band]) for layer in layers]), ~valid)
        some = valid.any(0)
        np.testing.assert_allclose(stats[f"{pol}_mean"][some], values.mean(0)[some], rtol=1e-5)
        sample_std = values.std(0, ddof=1).filled(0)  # n - 1; 0 where one acquisition
        np.testing.assert_allclose(stats[f"{pol}_std"][some], sample_std[some], atol=1e-4)
        np.testing.assert_allclose(stats[f"{pol}_min"][some], values.min(0)[some], rtol=1e-5)
        np.testing.assert_allclose(stats[f"{pol}_max"][some], values.max(0)[some], rtol=1e-5)
    np.testing.assert_array_equal(stats["count"], valid.sum(0))
    assert stats["count"][:, :2].max() == 1  # only b has data in a's and c's gap
    assert stats["count"][:, 5:].min() == 3


def test_the_sample_spread_does_not_shrink_with_fewer_acquisitions(tmp_path):
    """The population std of n draws is biased low by sqrt((n - 1) / n): 0.71 of the truth for
    two acquisitions, 0.87 for four. The sample std's square is unbiased for any n."""
    rng = np.random.default_rng(0)
    sigma, pixels = 2.0, 200_000
    for count in (2, 4, 8):
        series = rng.normal(-10, sigma, (count, 2, 1, pixels)).astype(np.float32)
        stack = series.reshape(2 * count, 1, pixels)
        std = get_recipe("stack_mean_std")(stack, np.ones((1, pixels), bool))[2]
        assert np.mean(std**2) == pytest.approx(sigma**2, rel=0.02), count


def test_a_single_acquisition_has_zero_spread(tmp_path, rng):
    a = acquisition(tmp_path / "a.tif", rng, nodata_cols=3)
    temporal_stack([a], tmp_path / "one.tif")
    stack, _, _ = read_stack(tmp_path / "one.tif")
    stats = statistics(stack)
    data = stats["vv_mean"][:, 3:]
    assert np.isfinite(data).all() and (stats["vv_std"][:, 3:] == 0).all()
    np.testing.assert_array_equal(stats["vv_min"][:, 3:], data)
    np.testing.assert_array_equal(stats["vv_max"][:, 3:], data)
    assert np.isnan(stack[:, :, :3]).all()  # every band is nodata where no acquisition has data


def test_acquisitions_that_do_not_overlap_are_refused(tmp_path, rng):
    a = acquisition(tmp_path / "a.tif", rng)
    far = Affine(10, 0, ORIGIN.c + 50_000, 0, -10, ORIGIN.f)
    b = acquisition(tmp_path / "b.tif", rng, transform=far)
    with pytest.raises(InputError, match="does not overlap") as err:
        temporal_stack([a, b], tmp_path / "s.tif")
    assert "\n" not in str(err.value) and not (tmp_path / "s.tif").exists()


@pytest.mark.parametrize(
    "descriptions, scenes",
    [
        (("20150108_DES:vv", "20150108_DES:vh"), ["20150108_DES"]),
        (("a:b:vv", "a:b:vh", "c:vv", "c:vh"), ["a:b", "c"]),
        (("vh", "vv", "mean"), None),
        (("a:vv", "a:vh", "b:vv"), None),
        ((None, None), None),
    ],
)
def test_the_acquisitions_of_a_stack_from_its_band_descriptions(descriptions, scenes):
    assert stacked_scenes(descriptions) == scenes
