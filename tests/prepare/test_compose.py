import numpy as np
import pytest
import rasterio

from builtup.core.errors import InputError
from builtup.prepare.compose import BAND_NAMES, InputConvention, compose_three_band

from conftest import ORIGIN, write_raster


def read_all(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.descriptions


def test_three_bands_values_and_georeference(tmp_path, scene_pair):
    vv_path, vh_path, wedge = scene_pair
    out = tmp_path / "out.tif"
    summary = compose_three_band(vv_path, vh_path, out)
    data, profile, descriptions = read_all(out)
    with rasterio.open(vv_path) as src:
        vv = src.read(1)
    with rasterio.open(vh_path) as src:
        vh = src.read(1)
    assert descriptions == BAND_NAMES
    assert profile["dtype"] == "float32" and profile["nodata"] == 0
    assert profile["crs"].to_epsg() == 32638 and profile["transform"] == ORIGIN
    assert profile["tiled"] and profile["compress"] == "zstd"
    np.testing.assert_array_equal(data[0], vh)
    np.testing.assert_array_equal(data[1], vv)
    np.testing.assert_allclose(data[2], (vh + vv) / 2, rtol=1e-6)
    assert (data[:, wedge] == 0).all()
    assert summary["valid_pixels"] == (~wedge).sum()


def test_other_codec_same_pixels(tmp_path, scene_pair):
    vv_path, vh_path, _ = scene_pair
    compose_three_band(vv_path, vh_path, tmp_path / "zstd.tif")
    compose_three_band(vv_path, vh_path, tmp_path / "deflate.tif", codec={"compress": "deflate"})
    with rasterio.open(tmp_path / "zstd.tif") as default:
        assert default.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
    with rasterio.open(tmp_path / "deflate.tif") as other:
        assert other.profile["compress"] == "deflate" and other.profile["tiled"]
    np.testing.assert_array_equal(
        read_all(tmp_path / "zstd.tif")[0], read_all(tmp_path / "deflate.tif")[0]
    )


def test_db_input_is_converted_to_linear(tmp_path, scene_pair):
    vv_path, vh_path, wedge = scene_pair
    with rasterio.open(vv_path) as src:
        vv = src.read(1)
    with rasterio.open(vh_path) as src:
        vh = src.read(1)
    vv_db = np.where(wedge, np.nan, 10 * np.log10(np.where(wedge, 1, vv)))
    vh_db = np.where(wedge, np.nan, 10 * np.log10(np.where(wedge, 1, vh)))
    write_raster(tmp_path / "vv_db.tif", vv_db, nodata=np.nan)
    write_raster(tmp_path / "vh_db.tif", vh_db, nodata=np.nan)
    out = tmp_path / "out.tif"
    compose_three_band(
        tmp_path / "vv_db.tif",
        tmp_path / "vh_db.tif",
        out,
        InputConvention(units="db", nodata=float("nan")),
    )
    data, _, _ = read_all(out)
    np.testing.assert_allclose(data[1][~wedge], vv[~wedge], rtol=1e-5)
    np.testing.assert_allclose(data[0][~wedge], vh[~wedge], rtol=1e-5)
    assert (data[:, wedge] == 0).all()


def test_both_polarisations_in_one_file(tmp_path, scene_pair):
    vv_path, vh_path, _ = scene_pair
    with rasterio.open(vv_path) as a, rasterio.open(vh_path) as b:
        stacked = np.stack([a.read(1), b.read(1)])
    both = write_raster(tmp_path / "both.tif", stacked)
    compose_three_band(both, both, tmp_path / "a.tif", vv_band=1, vh_band=2)
    compose_three_band(vv_path, vh_path, tmp_path / "b.tif")
    np.testing.assert_array_equal(read_all(tmp_path / "a.tif")[0], read_all(tmp_path / "b.tif")[0])


def test_missing_band_refused(tmp_path, scene_pair):
    vv_path, vh_path, _ = scene_pair
    with pytest.raises(InputError, match="band 2 requested"):
        compose_three_band(vv_path, vh_path, tmp_path / "o.tif", vh_band=2)


def test_grids_that_differ_are_refused(tmp_path, scene_pair):
    vv_path, _, _ = scene_pair
    shifted = write_raster(
        tmp_path / "vh2.tif", np.ones((260, 300)), transform=ORIGIN @ ORIGIN.translation(0.3, 0)
    )
    with pytest.raises(InputError, match="VH grid .* differs from VV grid") as err:
        compose_three_band(vv_path, shifted, tmp_path / "o.tif")
    assert str(shifted) in str(err.value)
    assert not (tmp_path / "o.tif").exists()


def test_missing_crs_refused(tmp_path, scene_pair):
    _, vh_path, _ = scene_pair
    no_crs = write_raster(tmp_path / "vv_nocrs.tif", np.ones((260, 300)), crs=None)
    with pytest.raises(InputError, match="no CRS"):
        compose_three_band(no_crs, vh_path, tmp_path / "o.tif")


def test_missing_file_refused(tmp_path, scene_pair):
    vv_path, _, _ = scene_pair
    with pytest.raises(InputError, match="does not exist"):
        compose_three_band(vv_path, tmp_path / "nope.tif", tmp_path / "o.tif")


def test_corrupt_file_refused(tmp_path, scene_pair):
    _, vh_path, _ = scene_pair
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00 this is not a tiff at all" * 10)
    with pytest.raises(InputError, match="corrupt or truncated") as err:
        compose_three_band(corrupt, vh_path, tmp_path / "o.tif")
    assert str(corrupt) in str(err.value)


def test_truncated_file_refused(tmp_path, scene_pair):
    vv_path, vh_path, _ = scene_pair
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(vv_path.read_bytes()[: vv_path.stat().st_size // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        compose_three_band(truncated, vh_path, tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()
    assert not list(tmp_path.glob(".o.tif*"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_with_zero_nodata_refused(tmp_path, scene_pair, bad):
    vv_path, vh_path, _ = scene_pair
    with rasterio.open(vv_path) as src:
        vv = src.read(1)
    vv[100, 100] = bad
    bad_path = write_raster(tmp_path / "bad.tif", vv)
    with pytest.raises(InputError, match="NaN/inf values") as err:
        compose_three_band(bad_path, vh_path, tmp_path / "o.tif")
    assert str(bad_path) in str(err.value)


def test_inf_with_nan_nodata_refused(tmp_path, scene_pair):
    vv_path, vh_path, _ = scene_pair
    with rasterio.open(vv_path) as src:
        vv = src.read(1)
    vv[5, 5] = np.inf
    bad = write_raster(tmp_path / "bad.tif", vv, nodata=np.nan)
    with pytest.raises(InputError, match="infinite"):
        compose_three_band(bad, vh_path, tmp_path / "o.tif", InputConvention(nodata=float("nan")))


def test_all_nodata_scene_refused(tmp_path, scene_pair):
    _, vh_path, _ = scene_pair
    empty = write_raster(tmp_path / "empty.tif", np.zeros((260, 300)))
    with pytest.raises(InputError, match="entirely nodata"):
        compose_three_band(empty, vh_path, tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()


def test_unknown_units_refused():
    with pytest.raises(ValueError, match="units"):
        InputConvention(units="amplitude")


def test_real_sen1floods11_chip(tmp_path, shared_sample):
    """The real chip: dB, both bands in one file, NaN nodata, EPSG:4326."""
    chip = shared_sample / "Spain_7370579_S1Hand.tif"
    out = tmp_path / "chip.tif"
    compose_three_band(
        chip, chip, out, InputConvention(units="db", nodata=float("nan")), vv_band=1, vh_band=2
    )
    with rasterio.open(chip) as src:
        vv_db, vh_db = src.read(1), src.read(2)
        crs, transform = src.crs, src.transform
    data, profile, _ = read_all(out)
    assert profile["crs"] == crs and profile["transform"] == transform
    valid = np.isfinite(vv_db) & np.isfinite(vh_db)
    assert (data[:, ~valid] == 0).all()
    assert np.median(10 * np.log10(data[1][valid])) == pytest.approx(
        np.median(vv_db[valid]), abs=1e-3
    )
    assert np.median(10 * np.log10(data[1][valid])) == pytest.approx(-10.5, abs=0.5)
