import hashlib
import math

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from rasterio import features
from rasterio.warp import transform_geom

from builtup.demo import generator as demo


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vv_files(root, city):
    return sorted(p for p in root.glob(f"{city}_2015/**/*_vv_*.tif") if "BorderMask" not in p.name)


def test_same_seed_same_bytes(tmp_path):
    a = demo.generate(tmp_path / "a", size=128, train=1, test=1)
    b = demo.generate(tmp_path / "b", size=128, train=1, test=1)
    c = demo.generate(tmp_path / "c", size=128, train=1, test=1, seed=1)
    for ra, rb, rc in zip(a, b, c, strict=True):
        assert digest(tmp_path / "a" / ra["vv"].split("/a/", 1)[1]) == digest(
            tmp_path / "b" / rb["vv"].split("/b/", 1)[1]
        )
        assert digest(tmp_path / "a" / ra["vv"].split("/a/", 1)[1]) != digest(
            tmp_path / "c" / rc["vv"].split("/c/", 1)[1]
        )


def test_rasters_are_unosat_like(tiny_demo):
    for path in tiny_demo.rglob("s1a_*.tif"):
        if "BorderMask" in path.name:
            continue
        with rasterio.open(path) as src:
            assert src.count == 1 and src.dtypes[0] == "float32" and src.nodata == 0
            assert src.crs.to_epsg() == 32638
            data = src.read(1)
        assert (data == 0).any(), f"{path.name} has no nodata wedge"
        assert (data[data != 0] > 0).mean() > 0.999
    assert len(list(tiny_demo.rglob("*_BorderMask.tif"))) == 2


def test_one_city_has_a_shifted_grid(tiny_demo):
    transforms = []
    for path in vv_files(tiny_demo, "Souleimaniye"):
        with rasterio.open(path) as src:
            transforms.append(src.transform)
    assert transforms[0].a == 10 and math.isclose(transforms[1].a, 10.0027)
    assert 0 < abs(transforms[1].c - transforms[0].c) < 10


def test_labels_are_unosat_like(tiny_demo):
    for shp in tiny_demo.glob("*_2015/*.shp"):
        with fiona.open(shp) as src:
            assert src.crs.to_epsg() == 4326
            values = {f.properties["DN"] for f in src}
            assert values == {255}
            assert len(src) >= 1


def class_levels(root, city):
    """Mean VV in dB inside and outside the label polygons (valid pixels only)."""
    path = vv_files(root, city)[0]
    with rasterio.open(path) as src:
        vv = src.read(1)
        shapes = []
        with fiona.open(next(root.glob(f"{city}_2015/*.shp"))) as labels:
            shapes = [transform_geom(labels.crs, src.crs, f.geometry) for f in labels]
        label = features.rasterize(shapes, out_shape=vv.shape, transform=src.transform)
    valid = vv > 0
    db = 10 * np.log10(np.where(valid, vv, 1))
    return db[valid & (label == 1)].mean(), db[valid & (label == 0)].mean()


@pytest.mark.parametrize("city", ["Mosul", "Najaf"])
def test_built_up_is_brighter_than_its_surroundings(tmp_path_factory, city):
    root = tmp_path_factory.mktemp("demo512")
    demo.generate(root, size=512, train=4, test=0, acquisitions_per_city=1)
    built, other = class_levels(root, city)
    assert -12 < built < -3
    assert other < built - 4


def test_render_levels_match_the_docstring():
    layout = demo.build_layout(0, 0, 1024)
    x = np.linspace(-layout.half, layout.half, 600, dtype=np.float32)
    xx, yy = np.meshgrid(x, x)
    vv, vh = demo.render_db(layout, xx, yy, "DES")
    assert vv.min() >= -24 and vv.max() <= 8
    assert (vv == -23).any(), "water present"
    assert (vh < vv).mean() > 0.99, "VH below VV nearly everywhere"


def test_ascending_and_descending_differ_on_structures():
    layout = demo.build_layout(0, 1, 512)
    x = np.linspace(-layout.half, layout.half, 400, dtype=np.float32)
    xx, yy = np.meshgrid(x, x)
    asc, _ = demo.render_db(layout, xx, yy, "ASC")
    des, _ = demo.render_db(layout, xx, yy, "DES")
    assert np.abs(asc - des).max() > 3


def test_block_labels_follow_the_blocks_inside_the_districts():
    layout = demo.build_layout(0, 0, 512)
    districts = shapely.union_all(demo.label_polygons(layout))
    blocks = demo.label_polygons(layout, "blocks")
    assert len(blocks) > 5 * len(demo.label_polygons(layout))
    assert 0.4 * districts.area < shapely.union_all(blocks).area < 0.95 * districts.area
    assert shapely.union_all(blocks).difference(districts.buffer(1.0)).area < 1.0
    with pytest.raises(ValueError, match="label style must be one of districts, blocks"):
        demo.label_polygons(layout, "streets")


def test_generate_demo_command_with_block_labels_and_four_acquisitions(tmp_path):
    from builtup.cli import main
    from builtup.config.sheet import scan_unosat

    counts = {}
    for labels in ("districts", "blocks"):
        root = tmp_path / labels
        args = ["--size", "512", "--train", "1", "--test", "0", "--acquisitions", "4"]
        assert main(["generate-demo", str(root), *args, "--labels", labels]) == 0
        assert len(scan_unosat(root)) == 4
        with fiona.open(next(root.rglob("*.shp"))) as src:
            counts[labels] = len(src)
    assert counts["blocks"] > 3 * counts["districts"]


def test_acquisition_counts_drawn_per_city_with_same_date_pairs():
    """A range gives each city its own count, drawn by seed; some acquisitions repeat the
    previous date and orbit (suffix _1), never twice in a row."""
    cities = demo.TRAIN_CITIES + demo.TEST_CITIES
    counts = [demo.acquisition_count((2, 6), 0, k) for k in range(len(cities))]
    assert all(2 <= c <= 6 for c in counts) and len(set(counts)) >= 3
    assert counts == [demo.acquisition_count((2, 6), 0, k) for k in range(len(cities))]
    assert counts != [demo.acquisition_count((2, 6), 1, k) for k in range(len(cities))]
    scenes = [demo.acquisitions(city, k, (2, 6), 64) for k, city in enumerate(cities)]
    repeats = [a for city in scenes for a in city if a.suffix]
    assert repeats and all(len(city) == c for city, c in zip(scenes, counts, strict=True))
    for city in scenes:
        for before, after in zip(city, city[1:], strict=False):
            if after.suffix:
                assert (after.day, after.orbit) == (before.day, before.orbit) and not before.suffix
    fixed = demo.acquisitions(demo.TRAIN_CITIES[0], 0, 4, 64)
    assert len(fixed) == 4 and not any(a.suffix for a in fixed)  # a number: no repeats


def test_generate_demo_command_with_other_counts_for_the_test_cities(tmp_path):
    from builtup.cli import main
    from builtup.config.sheet import scan_unosat

    args = ["--size", "64", "--train", "2", "--test", "1", "--acquisitions", "2"]
    assert main(["generate-demo", str(tmp_path), *args, "--test-acquisitions", "4"]) == 0
    counts = scan_unosat(tmp_path).groupby(["city", "split"]).size().to_dict()
    assert counts == {
        ("38SLF_Mosul", "train"): 2,
        ("38SNE_Souleimaniye", "train"): 2,
        ("38RNV_Samawah", "test"): 4,
    }


@pytest.mark.parametrize("value", ["6-2", "0", "2-x"])
def test_a_bad_acquisition_count_is_one_line(tmp_path, capsys, value):
    from builtup.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["generate-demo", str(tmp_path), "--acquisitions", value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("ERROR: builtup generate-demo: argument --acquisitions")
        and err.count("\n") == 1
    )
    assert not any(tmp_path.iterdir())
