import logging

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon, box

from builtup.core.errors import InputError
from builtup.prepare.masks import load_polygons, rasterize_mask

from conftest import ORIGIN, write_polygons, write_raster

TO_LONLAT = Transformer.from_crs("EPSG:32638", "EPSG:4326", always_xy=True).transform


@pytest.fixture
def scene(tmp_path):
    image = np.ones((3, 100, 120), dtype="float32")
    image[:, :, :10] = 0  # nodata strip on the west
    return write_raster(tmp_path / "scene.tif", image)


def utm_box(col0, row0, col1, row1):
    """A box in UTM covering pixel columns [col0, col1) and rows [row0, row1) of ORIGIN."""
    x0, y0 = ORIGIN @ (col0, row0)
    x1, y1 = ORIGIN @ (col1, row1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def test_mask_from_lonlat_polygons(tmp_path, scene):
    polygon = shapely.transform(utm_box(30, 20, 60, 50), TO_LONLAT, interleaved=False)
    labels = write_polygons(tmp_path / "labels.shp", [polygon])
    out = tmp_path / "mask.tif"
    summary = rasterize_mask(scene, labels, out, all_touched=False)
    with rasterio.open(out) as src:
        mask = src.read(1)
        assert src.crs.to_epsg() == 32638 and src.transform == ORIGIN
        assert src.dtypes[0] == "uint8" and src.nodata == 255
    assert set(np.unique(mask)) == {0, 1, 255}
    assert (mask[:, :10] == 255).all()
    inside = mask[21:49, 31:59]
    assert (inside == 1).all()
    assert abs(int((mask == 1).sum()) - 30 * 30) <= 2 * 30 + 2 * 30  # edges after reprojection
    assert summary["builtup"] == int((mask == 1).sum())


def test_all_touched_burns_more(tmp_path, scene):
    polygon = shapely.transform(utm_box(30.5, 20.5, 40.5, 30.5), TO_LONLAT, interleaved=False)
    labels = write_polygons(tmp_path / "labels.shp", [polygon])
    rasterize_mask(scene, labels, tmp_path / "a.tif", all_touched=True)
    rasterize_mask(scene, labels, tmp_path / "b.tif", all_touched=False)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (a.read(1) == 1).sum() > (b.read(1) == 1).sum()


def test_polygon_over_nodata_is_ignored(tmp_path, scene):
    polygon = shapely.transform(utm_box(0, 0, 20, 20), TO_LONLAT, interleaved=False)
    labels = write_polygons(tmp_path / "labels.shp", [polygon])
    rasterize_mask(scene, labels, tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as src:
        mask = src.read(1)
    assert (mask[:20, :10] == 255).all() and (mask[:19, 10:19] == 1).all()


def test_nan_nodata_of_a_temporal_stack_is_ignored(tmp_path):
    stack = np.full((13, 100, 120), -12.0, dtype="float32")
    stack[:, :, :10] = np.nan  # no acquisition there
    path = write_raster(tmp_path / "stack.tif", stack, nodata=float("nan"))
    polygon = shapely.transform(utm_box(0, 0, 20, 20), TO_LONLAT, interleaved=False)
    rasterize_mask(path, write_polygons(tmp_path / "labels.shp", [polygon]), tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as src:
        mask = src.read(1)
    assert (mask[:, :10] == 255).all() and (mask[:, 10:] != 255).all()
    assert (mask[:19, 10:19] == 1).all()


def test_self_intersecting_polygon_is_repaired_and_logged(tmp_path, scene, caplog):
    x0, y0 = ORIGIN @ (30, 60)
    x1, y1 = ORIGIN @ (60, 30)
    bowtie = shapely.transform(
        Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)]), TO_LONLAT, interleaved=False
    )
    assert not bowtie.is_valid
    labels = write_polygons(tmp_path / "labels.shp", [bowtie])
    with caplog.at_level(logging.WARNING):
        summary = rasterize_mask(scene, labels, tmp_path / "m.tif")
    assert "repaired 1 invalid geometry" in caplog.text
    assert summary["builtup"] > 300


def test_empty_shapefile_refused(tmp_path, scene):
    labels = write_polygons(tmp_path / "empty.shp", [])
    with pytest.raises(InputError, match="no polygon"):
        rasterize_mask(scene, labels, tmp_path / "m.tif")
    assert not (tmp_path / "m.tif").exists()


def test_shapefile_without_prj_refused(tmp_path, scene):
    labels = write_polygons(tmp_path / "l.shp", [box(44, 32, 44.1, 32.1)])
    labels.with_suffix(".prj").unlink()
    with pytest.raises(InputError, match=r"no \.prj"):
        load_polygons(labels)


def test_missing_and_unreadable_label_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_polygons(tmp_path / "nope.shp")
    junk = tmp_path / "junk.shp"
    junk.write_bytes(b"not a shapefile")
    junk.with_suffix(".prj").write_text("GEOGCS[]")
    with pytest.raises(InputError, match="cannot be read"):
        load_polygons(junk)


def test_geopackage_labels(tmp_path, scene):
    polygon = shapely.transform(utm_box(30, 20, 60, 50), TO_LONLAT, interleaved=False)
    labels = write_polygons(tmp_path / "labels.gpkg", [polygon], driver="GPKG")
    assert rasterize_mask(scene, labels, tmp_path / "m.tif", all_touched=False)["builtup"] > 800


def test_real_label_polygonised_then_rasterised(tmp_path, shared_sample):
    """Polygonise the real Sen1Floods11 label, rasterise it back: IoU near 1."""
    from rasterio import features
    from shapely.geometry import shape

    with rasterio.open(shared_sample / "Spain_7370579_LabelHand.tif") as src:
        label = src.read(1)
        profile = src.profile
    polygons = [
        shape(g)
        for g, v in features.shapes(
            (label == 1).astype("uint8"), mask=label == 1, transform=profile["transform"]
        )
        if v == 1
    ]
    labels = write_polygons(tmp_path / "water.shp", polygons, crs=profile["crs"])
    scene = write_raster(
        tmp_path / "scene.tif",
        np.where(label >= 0, 1.0, 0.0)[None].repeat(3, 0),
        transform=profile["transform"],
        crs=profile["crs"],
    )
    rasterize_mask(scene, labels, tmp_path / "m.tif", all_touched=False)
    with rasterio.open(tmp_path / "m.tif") as src:
        mask = src.read(1)
    valid = label >= 0
    truth, pred = label[valid] == 1, mask[valid] == 1
    iou = (truth & pred).sum() / (truth | pred).sum()
    assert iou > 0.999
    assert (mask[~valid] == 255).all()


def test_labels_of_a_training_city_that_miss_its_scene_are_refused(tmp_path, scene):
    far = write_polygons(tmp_path / "far.shp", [box(10, 10, 10.1, 10.1)])
    assert rasterize_mask(scene, far, tmp_path / "test.tif")["builtup"] == 0  # a test city
    with pytest.raises(InputError, match="no label polygon falls on the valid pixels of"):
        rasterize_mask(scene, far, tmp_path / "m.tif", trained_on=True)
    assert not list(tmp_path.glob("m.tif*")) and not list(tmp_path.glob(".m.tif*"))


def test_labels_in_metres_under_a_prj_of_degrees_are_refused(tmp_path, scene):
    metres = write_polygons(tmp_path / "metres.shp", [utm_box(30, 20, 60, 50)])  # EPSG:4326
    with pytest.raises(InputError, match="cannot be degrees of its CRS EPSG:4326"):
        rasterize_mask(scene, metres, tmp_path / "m.tif")
    assert not (tmp_path / "m.tif").exists()


def test_a_nan_coordinate_in_geojson_labels_is_refused(tmp_path, scene):
    import json

    good = [[44.0, 32.0], [44.1, 32.0], [44.1, 32.1], [44.0, 32.0]]
    bad = [[44.2, 32.0], [44.3, 32.0], [float("nan"), 32.1], [44.2, 32.0]]
    features = [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [r]}}
        for r in (good, bad)
    ]
    labels = tmp_path / "labels.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.raises(InputError, match="labels.geojson: feature 1 has a NaN coordinate"):
        rasterize_mask(scene, labels, tmp_path / "m.tif")
