import json

import numpy as np
import pytest
import rasterio

from builtup.core.errors import InputError
from builtup.prepare.tiles import TileSet, cut_tiles, export_tile, tile_offsets, tile_windows

from conftest import ORIGIN, write_raster


@pytest.mark.parametrize(
    ("length", "size", "overlap"),
    [
        (10980, 512, 32),
        (1024, 512, 32),
        (512, 512, 32),
        (700, 512, 32),
        (1000, 128, 16),
        (513, 512, 0),
    ],
)
def test_offsets_cover_evenly_and_end_flush(length, size, overlap):
    offsets = tile_offsets(length, size, overlap)
    assert offsets[0] == 0
    assert offsets[-1] == length - size
    steps = np.diff(offsets)
    if len(offsets) > 1:
        assert (size - steps).min() >= overlap
        assert steps.max() - steps.min() <= 1
    # one tile fewer would break the minimum overlap
    if len(offsets) > 2:
        fewer = (length - size) / (len(offsets) - 2)
        assert size - fewer < overlap


def test_full_scene_tile_count():
    assert len(tile_offsets(10980, 512, 32)) == 23
    assert tile_offsets(1024, 512, 32) == [0, 256, 512]


def test_offsets_reject_tile_larger_than_raster():
    with pytest.raises(ValueError, match="exceeds"):
        tile_offsets(300, 512, 32)


def test_windows_row_major():
    windows = tile_windows(1024, 768, 512, 32)
    assert [(w.row_off, w.col_off) for w in windows] == [
        (r, c) for r in (0, 256, 512) for c in (0, 256)
    ]


@pytest.fixture
def scene_and_mask(tmp_path, rng):
    image = rng.uniform(0.01, 1.0, (3, 300, 400)).astype("float32")
    image[:, :20, :] = 0
    mask = (rng.uniform(size=(300, 400)) > 0.7).astype("uint8")
    mask[:20, :] = 255
    scene = write_raster(tmp_path / "scene.tif", image)
    mask_path = write_raster(tmp_path / "mask.tif", mask, dtype="uint8", nodata=255)
    return scene, mask_path, image, mask


def test_cut_tiles_content_and_georeference(tmp_path, scene_and_mask):
    scene, mask_path, image, mask = scene_and_mask
    tiles = TileSet.in_folder(tmp_path / "tiles")
    count = cut_tiles(scene, mask_path, tiles, 128, 16)
    images, masks = tiles.load()
    meta = tiles.meta()
    assert count == len(meta["windows"]) == images.shape[0] == masks.shape[0] == 3 * 4
    assert images.dtype == np.float32 and masks.dtype == np.uint8
    for i, (col, row, w, h) in enumerate(meta["windows"]):
        np.testing.assert_array_equal(images[i], image[:, row : row + h, col : col + w])
        np.testing.assert_array_equal(masks[i], mask[row : row + h, col : col + w])
    assert rasterio.crs.CRS.from_wkt(meta["crs"]) == rasterio.crs.CRS.from_epsg(32638)
    assert tuple(meta["transform"]) == tuple(ORIGIN)[:6]

    out = tmp_path / "tile5.tif"
    export_tile(tiles, 5, out, tmp_path / "tile5_mask.tif")
    col, row = meta["windows"][5][:2]
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32638
        assert src.transform == ORIGIN @ ORIGIN.translation(col, row)
        np.testing.assert_array_equal(src.read(), image[:, row : row + 128, col : col + 128])
    with rasterio.open(tmp_path / "tile5_mask.tif") as src:
        np.testing.assert_array_equal(src.read(1), mask[row : row + 128, col : col + 128])


def test_export_tile_out_of_range(tmp_path, scene_and_mask):
    scene, mask_path, *_ = scene_and_mask
    tiles = TileSet.in_folder(tmp_path / "tiles")
    cut_tiles(scene, mask_path, tiles, 128, 16)
    with pytest.raises(InputError, match="out of range"):
        export_tile(tiles, 99, tmp_path / "x.tif")


def test_export_tile_writes_both_files_or_neither(tmp_path, scene_and_mask):
    scene, mask_path, *_ = scene_and_mask
    tiles = TileSet.in_folder(tmp_path / "tiles")
    cut_tiles(scene, mask_path, tiles, 128, 16)
    (tmp_path / "taken").mkdir()  # the mask's name is a folder's
    with pytest.raises(OSError):
        export_tile(tiles, 0, tmp_path / "image.tif", tmp_path / "taken")
    assert not (tmp_path / "image.tif").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif", "scene.tif", "taken", "tiles"]


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda t: t.index.write_text("{"), "tiles.json: not a tile index written by cut_tiles"),
        (lambda t: t.masks.unlink(), "masks.npy: not a tile array written by cut_tiles"),
        (lambda t: t.images.write_bytes(b"\x93NUMPY junk"), "images.npy: not a tile array"),
        (lambda t: np.save(t.masks, np.zeros((2, 128, 128), "uint8")), "masks.npy: holds shape"),
    ],
    ids=["index", "missing masks", "corrupt images", "masks of another count"],
)
def test_a_corrupt_tile_folder_is_named(tmp_path, scene_and_mask, spoil, message):
    scene, mask_path, *_ = scene_and_mask
    tiles = TileSet.in_folder(tmp_path / "tiles")
    cut_tiles(scene, mask_path, tiles, 128, 16)
    spoil(tiles)
    with pytest.raises(InputError, match=message):
        export_tile(tiles, 0, tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


def test_scene_smaller_than_tile(tmp_path, scene_and_mask):
    scene, mask_path, *_ = scene_and_mask
    with pytest.raises(InputError, match="smaller than a tile"):
        cut_tiles(scene, mask_path, TileSet.in_folder(tmp_path / "t"), 512, 32)
    assert not (tmp_path / "t" / "images.npy").exists()


def test_mask_on_other_grid_refused(tmp_path, scene_and_mask, rng):
    scene, _, _, mask = scene_and_mask
    other = write_raster(
        tmp_path / "m2.tif",
        mask,
        dtype="uint8",
        nodata=255,
        transform=ORIGIN @ ORIGIN.translation(1, 0),
    )
    with pytest.raises(InputError, match="not on the grid"):
        cut_tiles(scene, other, TileSet.in_folder(tmp_path / "t"), 128, 16)


def test_tiles_index_is_json(tmp_path, scene_and_mask):
    scene, mask_path, *_ = scene_and_mask
    tiles = TileSet.in_folder(tmp_path / "tiles")
    cut_tiles(scene, mask_path, tiles, 128, 16)
    meta = json.loads(tiles.index.read_text())
    with rasterio.open(scene) as src:
        assert meta["bands"] == list(src.descriptions) and meta["nodata"] == src.nodata
    assert meta["tile_size"] == 128


def test_truncated_scene_stops_with_its_name(tmp_path, scene_and_mask):
    scene, mask_path, *_ = scene_and_mask
    with open(scene, "r+b") as fh:  # the header stays readable, the last strips are cut off
        fh.truncate(scene.stat().st_size // 2)
    tiles = TileSet.in_folder(tmp_path / "t")
    with pytest.raises(InputError, match="scene.tif.*cannot be decoded"):
        cut_tiles(scene, mask_path, tiles, 128, 16)
    assert not any(path.exists() for path in (tiles.images, tiles.masks, tiles.index))
    assert not list((tmp_path / "t").glob("*.part"))


def test_tiles_cut_in_column_blocks_are_exact(tmp_path, scene_and_mask, monkeypatch):
    from builtup.prepare import tiles as tiling

    monkeypatch.setattr(tiling, "BLOCK_WIDTH", 200)  # one or two tiles per block
    scene, mask_path, image, mask = scene_and_mask
    tiles = TileSet.in_folder(tmp_path / "tiles")
    cut_tiles(scene, mask_path, tiles, 128, 16)
    images, masks = tiles.load()
    for i, (col, row, w, h) in enumerate(tiles.meta()["windows"]):
        np.testing.assert_array_equal(images[i], image[:, row : row + h, col : col + w])
        np.testing.assert_array_equal(masks[i], mask[row : row + h, col : col + w])


def test_cutting_a_wide_scene_holds_blocks_not_strips(tmp_path):
    """Memory does not grow with the scene's width: a 13-band stack's full-width strip of a
    full-size scene is 290 MB, and several were held at once."""
    import tracemalloc

    bands, size, width = 3, 64, 16384  # 8 blocks of 2048 px to a strip
    scene = write_raster(tmp_path / "wide.tif", np.full((bands, 4 * size, width), 0.5, "float32"))
    mask = write_raster(
        tmp_path / "mask.tif", np.zeros((4 * size, width), "uint8"), dtype="uint8", nodata=255
    )
    tracemalloc.start()
    cut_tiles(scene, mask, TileSet.in_folder(tmp_path / "tiles"), size, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    strip = bands * size * width * 4
    assert peak < strip / 1.5, f"{peak / 2**20:.1f} MiB held, a strip is {strip / 2**20:.1f} MiB"
