"""Scene prediction, city aggregation, polygons and metrics on synthetic rasters."""

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from affine import Affine
from torch import nn

from builtup.core.bands import STACK_BANDS
from builtup.core.errors import InputError
from builtup.core.probability import PROB_NODATA, PROB_SCALE
from builtup.deliver.aggregate import aggregate_city
from builtup.deliver.polygons import builtup_polygons, write_polygons
from builtup.deliver.predict import (
    FoldModel,
    ScenePredictor,
    blend_weights,
    load_fold_model,
)
from builtup.deliver.threshold import best_level, confusion_at
from builtup.prepare.masks import rasterize_mask

from conftest import ORIGIN, write_raster


class PixelModel(nn.Module):
    """Per-pixel logits (a 1x1 convolution): equivariant to shifts, flips and rotations."""

    def __init__(self, channels=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 2, 1)
        torch.manual_seed(0)
        nn.init.normal_(self.conv.weight)

    def forward(self, x):
        return self.conv(x)


class ConstantModel(nn.Module):
    def forward(self, x):
        logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
        logits[:, 1] = 0.7
        return logits


def fold(network, channels=3):
    return FoldModel(
        network.eval(),
        np.zeros((channels, 1, 1), np.float32),
        np.ones((channels, 1, 1), np.float32),
    )


@pytest.fixture
def scene(tmp_path, rng):
    image = rng.gamma(4.4, 0.05 / 4.4, (3, 700, 900)).astype("float32")
    rows, cols = np.mgrid[:700, :900]
    wedge = cols > 820 + rows // 10
    image[:, wedge] = 0
    return write_raster(tmp_path / "scene.tif", image), image, wedge


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src.overviews(1)


def test_blend_weights_are_positive_and_flat_inside():
    w = blend_weights(256, 64)
    assert w.shape == (256, 256) and w.min() > 0 and w[64:-64, 64:-64].min() == 1.0
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])


def test_constant_model_gives_a_seamless_constant_map(tmp_path, scene):
    path, _, wedge = scene
    predictor = ScenePredictor(
        [fold(ConstantModel())], "linear3", window=256, overlap=64, batch_size=3
    )
    predictor.predict_scene(path, tmp_path / "p.tif")
    values, profile, overviews = read(tmp_path / "p.tif")
    expected = round(PROB_SCALE * float(torch.sigmoid(torch.tensor(0.7))))
    assert (values[~wedge] == expected).all()
    assert (values[wedge] == PROB_NODATA).all()
    assert profile["transform"] == ORIGIN and profile["crs"].to_epsg() == 32638
    assert values.shape == (700, 900) and overviews


def test_pixel_model_is_seamless_whatever_the_windows(tmp_path, scene):
    path, image, wedge = scene
    network = PixelModel()
    with torch.no_grad():
        logits = network(torch.from_numpy(image[None]))
    expected = np.rint(torch.softmax(logits, 1)[0, 1].numpy() * PROB_SCALE)
    for window, overlap in ((256, 64), (320, 100), (1024, 0)):
        out = tmp_path / f"p{window}.tif"
        ScenePredictor([fold(network)], "linear3", window=window, overlap=overlap).predict_scene(
            path, out
        )
        values = read(out)[0]
        assert np.abs(values[~wedge].astype(int) - expected[~wedge]).max() <= 1


class EdgeModel(nn.Module):
    """Built-up (logit +5) within 32 px of its input's edges, background (-5) inside: a model
    whose output depends on where a pixel lies in the window."""

    def forward(self, x):
        height, width = x.shape[-2:]
        rows, cols = torch.arange(height)[:, None], torch.arange(width)[None, :]
        near = torch.minimum(
            torch.minimum(rows, height - 1 - rows), torch.minimum(cols, width - 1 - cols)
        )
        logits = torch.zeros(x.shape[0], 2, height, width)
        logits[:, 1] = torch.where(near < 32, 5.0, -5.0)
        return logits


@pytest.mark.parametrize("window, kept", [(256, 192), (320, 128), (1024, 896)])
def test_crop_stitching_is_seamless_and_exactly_on_the_grid(tmp_path, scene, window, kept):
    path, image, wedge = scene
    network = PixelModel()
    with torch.no_grad():
        logits = network(torch.from_numpy(image[None]))
    expected = np.rint(torch.softmax(logits, 1)[0, 1].numpy() * PROB_SCALE)
    out = tmp_path / "crop.tif"
    predictor = ScenePredictor(
        [fold(network)], "linear3", window=window, stitch="crop", kept=kept, batch_size=3
    )
    predictor.predict_scene(path, out)
    values, profile, _ = read(out)
    assert values.shape == (700, 900) and profile["transform"] == ORIGIN
    assert np.abs(values[~wedge].astype(int) - expected[~wedge]).max() <= 1
    assert (values[wedge] == PROB_NODATA).all()


def test_crop_stitching_keeps_only_the_centre_of_each_window(tmp_path, scene):
    path, _, wedge = scene
    low = round(PROB_SCALE * float(torch.sigmoid(torch.tensor(-5.0))))
    crop = ScenePredictor([fold(EdgeModel())], "linear3", window=320, stitch="crop", kept=256)
    crop.predict_scene(path, tmp_path / "crop.tif")
    values = read(tmp_path / "crop.tif")[0]
    assert (values[~wedge] == low).all()  # no pixel comes from a window's outer 32 px
    blend = ScenePredictor([fold(EdgeModel())], "linear3", window=320, overlap=64)
    blend.predict_scene(path, tmp_path / "blend.tif")
    assert (read(tmp_path / "blend.tif")[0][~wedge] > low).any()  # the scene's own edges


@pytest.mark.parametrize("kept", [None, 0, 400, 255])
def test_crop_stitching_needs_a_centre_that_fits_the_window(kept):
    with pytest.raises(ValueError, match="kept"):
        ScenePredictor([fold(PixelModel())], "linear3", window=320, stitch="crop", kept=kept)


def test_a_recipe_of_per_window_statistics_is_applied_window_by_window(tmp_path, scene):
    """minmax_pow3 scales each sample by its own min and max: the predictor applies it to
    each window, not to the strip (here one window holds the whole scene)."""
    from builtup.core.recipes import get_recipe

    path, image, wedge = scene
    network = PixelModel()
    features = get_recipe("minmax_pow3")(image, ~wedge)
    with torch.no_grad():
        logits = network(torch.from_numpy(features[None]))
    expected = np.rint(torch.softmax(logits, 1)[0, 1].numpy() * PROB_SCALE)
    predictor = ScenePredictor([fold(network)], "minmax_pow3", window=1024, overlap=0)
    predictor.predict_scene(path, tmp_path / "p.tif")
    values = read(tmp_path / "p.tif")[0]
    assert np.abs(values[~wedge].astype(int) - expected[~wedge]).max() <= 1


def write_stack(path, rng, nodata_cols=40):
    """A temporal stack of 300 x 400 px: dB statistics, NaN where no acquisition has data and
    in the ascending means (a city seen only from descending orbits)."""
    stack = rng.normal(-12, 3, (len(STACK_BANDS), 300, 400)).astype("float32")
    for name in ("vv_mean_asc", "vh_mean_asc"):
        stack[STACK_BANDS.index(name)] = np.nan
    stack[:, :, :nodata_cols] = np.nan
    write_raster(path, stack, nodata=float("nan"))
    with rasterio.open(path, "r+") as dst:
        dst.descriptions = STACK_BANDS
    return path, stack


def test_a_stack_model_predicts_the_stack_pixel_by_pixel(tmp_path, rng):
    path, stack = write_stack(tmp_path / "stack.tif", rng)
    network = PixelModel(channels=4)
    predictor = ScenePredictor([fold(network, 4)], "stack_mean_std", window=256, overlap=64)
    predictor.predict_scene(path, tmp_path / "p.tif")
    values, profile, _ = read(tmp_path / "p.tif")
    assert profile["transform"] == ORIGIN and values.shape == (300, 400)
    assert (values[:, :40] == PROB_NODATA).all() and (values[:, 40:] != PROB_NODATA).all()
    channels = [STACK_BANDS.index(n) for n in ("vv_mean", "vh_mean", "vv_std", "vh_std")]
    with torch.no_grad():
        logits = network(torch.from_numpy(stack[channels][None, :, :, 40:]))
    expected = np.rint(torch.softmax(logits, 1)[0, 1].numpy() * PROB_SCALE)
    assert np.abs(values[:, 40:].astype(int) - expected).max() <= 1


def test_a_recipe_of_the_other_kind_of_raster_is_refused(tmp_path, rng, scene):
    stack_path, _ = write_stack(tmp_path / "stack.tif", rng)
    scene_model = ScenePredictor([fold(PixelModel())], "linear3", window=256, overlap=64)
    with pytest.raises(InputError, match="is a stack raster, and recipe linear3 reads a scene"):
        scene_model.predict_scene(stack_path, tmp_path / "p.tif")
    stack_model = ScenePredictor([fold(PixelModel(4), 4)], "stack_mean_std", window=256)
    with pytest.raises(InputError, match="is a scene raster, and recipe stack_mean_std reads"):
        stack_model.predict_scene(scene[0], tmp_path / "q.tif")


@pytest.mark.parametrize("tta", ["flips", "rot90", "rot90_without_identity", "d4"])
def test_tta_round_trips_the_identity(tmp_path, scene, tta):
    path, *_ = scene
    network = PixelModel()
    plain = ScenePredictor([fold(network)], "linear3", "none", 256, 64)
    augmented = ScenePredictor([fold(network)], "linear3", tta, 256, 64)
    plain.predict_scene(path, tmp_path / "a.tif")
    augmented.predict_scene(path, tmp_path / "b.tif")
    a, b = read(tmp_path / "a.tif")[0], read(tmp_path / "b.tif")[0]
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_fold_models_are_averaged_in_logit_space(tmp_path, scene):
    path, image, wedge = scene
    first, second = PixelModel(), PixelModel()
    with torch.no_grad():
        second.conv.weight.mul_(-0.5)
        x = torch.from_numpy(image[None])
        logits = (first(x) + second(x)) / 2
    expected = np.rint(torch.softmax(logits, 1)[0, 1].numpy() * PROB_SCALE)
    ScenePredictor([fold(first), fold(second)], "linear3", window=256, overlap=64).predict_scene(
        path, tmp_path / "p.tif"
    )
    values = read(tmp_path / "p.tif")[0]
    assert np.abs(values[~wedge].astype(int) - expected[~wedge]).max() <= 1


def prob_raster(path, value, transform, shape=(300, 300), nodata_cols=0):
    data = np.full(shape, round(value * PROB_SCALE), np.uint8)
    data[:, :nodata_cols] = PROB_NODATA
    return write_raster(path, data, transform=transform, dtype="uint8", nodata=PROB_NODATA)


def test_aggregation_across_a_shifted_grid(tmp_path):
    a = prob_raster(tmp_path / "a.tif", 0.8, ORIGIN, nodata_cols=50)
    shifted = Affine(10.0027, 0, ORIGIN.c + 2.16, 0, -10.0027, ORIGIN.f - 1.84)
    b = prob_raster(tmp_path / "b.tif", 0.4, shifted, shape=(280, 280))
    aggregate_city([a, b], tmp_path / "mean.tif")
    values, profile, _ = read(tmp_path / "mean.tif")
    assert profile["transform"] == ORIGIN
    assert abs(int(values[100, 150]) - round(0.6 * PROB_SCALE)) <= 1
    assert values[100, 10] == round(0.4 * PROB_SCALE)  # only b has data there
    assert values[299, 299] == round(0.8 * PROB_SCALE)  # b ends before a's far corner
    aggregate_city([a, b], tmp_path / "vote.tif", method="vote")
    votes = read(tmp_path / "vote.tif")[0]
    assert votes[100, 150] == PROB_SCALE  # one of two says built-up: N-1 of N


def test_logit_aggregation_is_the_mean_logit_where_acquisitions_have_data(tmp_path):
    a = prob_raster(tmp_path / "a.tif", 0.95, ORIGIN, nodata_cols=50)
    b = prob_raster(tmp_path / "b.tif", 0.3, ORIGIN)
    c = prob_raster(tmp_path / "c.tif", 0.2, ORIGIN)
    aggregate_city([a, b, c], tmp_path / "logit.tif", method="logit")
    values = read(tmp_path / "logit.tif")[0]

    def logit(p):
        p = round(p * PROB_SCALE) / PROB_SCALE
        return np.log(p / (1 - p))

    three = 1 / (1 + np.exp(-(logit(0.95) + logit(0.3) + logit(0.2)) / 3))
    two = 1 / (1 + np.exp(-(logit(0.3) + logit(0.2)) / 2))
    assert values[100, 150] == round(three * PROB_SCALE)
    assert values[100, 10] == round(two * PROB_SCALE)  # a has no data there
    # the mean probability (0.483) is below 0.5; the mean logit (0.24) is above 0
    assert three > 0.5 > (0.95 + 0.3 + 0.2) / 3
    one = aggregate_city([c], tmp_path / "one.tif", method="logit")
    assert one["method"] == "logit"
    np.testing.assert_array_equal(read(tmp_path / "one.tif")[0], read(c)[0])
    with pytest.raises(ValueError, match="mean, logit, vote"):
        aggregate_city([c], tmp_path / "x.tif", method="median")


def test_aggregation_of_one_acquisition_is_identity(tmp_path):
    a = prob_raster(tmp_path / "a.tif", 0.3, ORIGIN, nodata_cols=20)
    aggregate_city([a], tmp_path / "one.tif")
    np.testing.assert_array_equal(read(tmp_path / "one.tif")[0], read(a)[0])


def test_non_overlapping_acquisitions_are_refused(tmp_path):
    a = prob_raster(tmp_path / "a.tif", 0.3, ORIGIN)
    far = Affine(10, 0, ORIGIN.c + 50_000, 0, -10, ORIGIN.f)
    b = prob_raster(tmp_path / "b.tif", 0.3, far)
    with pytest.raises(InputError, match="does not overlap"):
        aggregate_city([a, b], tmp_path / "c.tif")
    assert not (tmp_path / "c.tif").exists()


def test_polygons_hold_the_built_up_class_only(tmp_path):
    data = np.zeros((200, 200), np.uint8)
    data[20:60, 30:90] = 200
    data[120:125, 120:125] = 250  # 25 px = 2500 m^2
    data[:, :5] = PROB_NODATA
    prob = write_raster(tmp_path / "p.tif", data, dtype="uint8", nodata=PROB_NODATA)
    polygons, crs = builtup_polygons(prob, 0.5)
    assert len(polygons) == 2 and all(p.is_valid for p in polygons)
    assert sorted(p.area for p in polygons) == [2500.0, 40 * 60 * 100.0]
    assert len(builtup_polygons(prob, 0.5, min_area=3000)[0]) == 1
    out = tmp_path / "sub" / "38RNV_Samawah.shp"
    write_polygons(polygons, crs, out)
    assert out.with_suffix(".prj").exists() and not list(out.parent.glob("tmp*"))
    import fiona

    with fiona.open(out) as src:
        assert len(src) == 2 and {f.properties["DN"] for f in src} == {255}
    write_polygons(polygons, crs, tmp_path / "x.gpkg")
    with fiona.open(tmp_path / "x.gpkg") as src:
        assert len(src) == 2


def test_polygonise_rasterise_round_trip_on_the_real_label(tmp_path, shared_sample):
    with rasterio.open(shared_sample / "Spain_7370579_LabelHand.tif") as src:
        label, transform, crs = src.read(1), src.transform, src.crs
    prob = np.where(label < 0, PROB_NODATA, np.where(label == 1, PROB_SCALE, 0)).astype(np.uint8)
    prob_path = write_raster(
        tmp_path / "p.tif", prob, transform=transform, crs=crs, dtype="uint8", nodata=PROB_NODATA
    )
    polygons, crs_out = builtup_polygons(prob_path, 0.5)
    write_polygons(polygons, crs_out, tmp_path / "water.shp")
    scene = write_raster(
        tmp_path / "s.tif",
        np.where(label >= 0, 1.0, 0.0)[None].repeat(3, 0),
        transform=transform,
        crs=crs,
    )
    rasterize_mask(scene, tmp_path / "water.shp", tmp_path / "m.tif", all_touched=False)
    mask = read(tmp_path / "m.tif")[0]
    valid = label >= 0
    truth, back = label[valid] == 1, mask[valid] == 1
    assert (truth & back).sum() / (truth | back).sum() > 0.999


def test_threshold_tuning_from_histograms():
    hist = np.zeros((2, 255), np.int64)
    hist[0, :100] = 10  # background below level 100
    hist[1, 150:] = 10  # built-up at 150 and above
    level, f1 = best_level(hist)
    assert 100 <= level <= 150 and f1 == 1.0
    assert confusion_at(hist, 150).tolist() == [[1000, 0], [0, 1050]]


def test_checkpoint_that_does_not_match_the_experiment(tmp_path):
    from builtup.train.task import SegmentationTask

    spec = TRAINED_SPEC
    path = save_task(SegmentationTask(spec), tmp_path / "m.ckpt")
    summary = {
        "normalisation": {
            "db3": {"mean": [0, 0, 0], "std": [1, 1, 1]},
            "db5": {"mean": [0] * 5, "std": [1] * 5},
        }
    }
    assert load_fold_model(path, summary, spec, "cpu").network is not None
    with pytest.raises(InputError, match="does not match the experiment: recipe"):
        load_fold_model(path, summary, {**spec, "recipe": "db5"}, "cpu")
    other = {**spec, "model": {**spec["model"], "architecture": "Unet", "encoder": "resnet18"}}
    with pytest.raises(InputError, match="does not match the experiment: model"):
        load_fold_model(path, summary, other, "cpu")
    with pytest.raises(InputError, match="checkpoint does not exist"):
        load_fold_model(tmp_path / "none.ckpt", summary, spec, "cpu")


def test_smp_fpn_predicts_a_scene_whose_sides_are_not_multiples_of_32(tmp_path, rng):
    import segmentation_models_pytorch as smp

    image = rng.gamma(4.4, 0.05 / 4.4, (3, 300, 517)).astype("float32")
    path = write_raster(tmp_path / "small.tif", image)
    network = smp.FPN(encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=2)
    out = tmp_path / "p.tif"
    ScenePredictor([fold(network)], "linear3", window=512, overlap=64).predict_scene(path, out)
    values, profile, _ = read(out)
    assert values.shape == (300, 517) and (values != PROB_NODATA).all()
    assert profile["transform"] == ORIGIN and (profile["width"], profile["height"]) == (517, 300)


TRAINED_SPEC = {
    "model": {
        "architecture": "lwrefinenet",
        "encoder": "mobilenetv2_050",
        "options": {"width": 16},
        "classes": 2,
        "encoder_weights": None,
    },
    "recipe": "db3",
    "loss": [{"name": "ce"}],
    "channels_last": False,
    "compile": False,
}
UNIT_NORMALISATION = {"normalisation": {"db3": {"mean": [0, 0, 0], "std": [1, 1, 1]}}}


def save_task(task, path, **extra):
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": {"spec": task.spec, "data": task.data},
            **extra,
        },
        path,
    )
    return path


def test_prediction_needs_no_encoder_weights_file(tmp_path):
    """A checkpoint holds every weight: its encoder's starting weights are not read again."""
    from builtup.train.task import SegmentationTask

    weights = tmp_path / "encoder.pth"
    torch.save(SegmentationTask(TRAINED_SPEC).model.encoder.state_dict(), weights)
    spec = {**TRAINED_SPEC, "model": {**TRAINED_SPEC["model"], "encoder_weights": str(weights)}}
    task = SegmentationTask(spec)
    path = save_task(task, tmp_path / "m.ckpt")
    weights.unlink()
    model = load_fold_model(path, UNIT_NORMALISATION, spec, "cpu")
    for name, value in task.model.state_dict().items():
        assert torch.equal(model.network.state_dict()[name], value), name


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_carrying_a_pickle_payload_is_refused_unrun(tmp_path):
    from builtup.train.task import SegmentationTask

    marker = tmp_path / "payload-ran"
    path = save_task(
        SegmentationTask(TRAINED_SPEC), tmp_path / "shared.ckpt", extra=Payload(marker)
    )
    with pytest.raises(InputError, match="refused: the checkpoint holds objects") as err:
        load_fold_model(path, UNIT_NORMALISATION, TRAINED_SPEC, "cpu")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_checkpoint_trained_with_another_normalisation_is_refused(tmp_path):
    from builtup.train.task import SegmentationTask

    data = {"normalisation": {"mean": [1, 2, 3], "std": [1, 1, 1]}, "tiles_sha256": "x"}
    path = save_task(SegmentationTask(TRAINED_SPEC, data), tmp_path / "m.ckpt")
    with pytest.raises(InputError, match="another normalisation"):
        load_fold_model(path, UNIT_NORMALISATION, TRAINED_SPEC, "cpu")


def test_min_area_and_simplify_are_metres_whatever_the_crs(tmp_path):
    data = np.zeros((100, 100), np.uint8)
    data[10:15, 10:15] = 250  # 25 px
    feet = Affine(10 / 0.3048, 0, 1_300_000, 0, -10 / 0.3048, 12_000_000)  # 10 m pixels in ft
    prob = write_raster(
        tmp_path / "ft.tif", data, transform=feet, crs="EPSG:2263", dtype="uint8", nodata=255
    )
    assert len(builtup_polygons(prob, 0.5, min_area=2400)[0]) == 1  # 2500 m^2 kept
    assert len(builtup_polygons(prob, 0.5, min_area=2600)[0]) == 0
    degrees = Affine(1e-4, 0, 44.0, 0, -1e-4, 36.0)
    geographic = write_raster(
        tmp_path / "deg.tif", data, transform=degrees, crs="EPSG:4326", dtype="uint8", nodata=255
    )
    assert len(builtup_polygons(geographic, 0.5)[0]) == 1
    with pytest.raises(InputError, match="in metres but the raster's CRS .* is geographic"):
        builtup_polygons(geographic, 0.5, min_area=100)


def test_quicklook_shows_the_delivery_threshold_and_the_tables_f1(tmp_path, monkeypatch):
    import json

    from builtup.deliver import quicklook as figures

    image = np.full((3, 64, 64), 0.1, np.float32)
    raster = write_raster(tmp_path / "r.tif", image)
    prob = np.full((64, 64), round(0.6 * PROB_SCALE), np.uint8)
    prob[:, 32:] = round(0.9 * PROB_SCALE)
    folder = tmp_path / "predictions" / "38SLD_Tikrit"
    prediction = write_raster(folder / "20150207_DES.tif", prob, dtype="uint8", nodata=255)
    mask = write_raster(tmp_path / "m.tif", np.ones((64, 64), np.uint8), dtype="uint8")
    threshold = tmp_path / "t.json"
    threshold.write_text(json.dumps({"threshold": 0.8, "out_of_fold": {"38SMA_Najaf": 0.3}}))
    table = tmp_path / "scenes.tsv"
    table.write_text("city\tscene\tsplit\tf1\n38SLD_Tikrit\t20150207_DES\ttest\t0.4321\n")
    shown = {}

    def capture(axes, gray, pred, label, title):
        shown.update(pred=pred, title=title)

    monkeypatch.setattr(figures, "sample_row", capture)
    out = tmp_path / "q.png"
    figures.plot_quicklook(raster, prediction, threshold, out, mask, table)
    assert out.stat().st_size > 0
    assert shown["pred"][:, :32].sum() == 0 and shown["pred"][:, 32:].all()
    assert "F1 0.432" in shown["title"] and "threshold 0.800" in shown["title"]


def test_prediction_window_must_be_a_multiple_of_32():
    import yaml

    from builtup.config.schema import check_against_schema

    from conftest import REPO

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["prediction"]["window"] = 300
    with pytest.raises(InputError, match="prediction.window: 300 is not a multiple of 32"):
        check_against_schema(config, "config.schema.yaml", "config")


def test_delivery_threshold_defaults_to_the_out_of_fold_one():
    import yaml

    from conftest import REPO

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    delivery = schema["properties"]["delivery"]["properties"]
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert delivery["threshold"]["default"] == config["delivery"]["threshold"] == "oof"
    assert delivery["threshold"]["default"] == "oof"
    assert schema["properties"]["evaluation"]["properties"]["all_touched"]["default"] is False
    assert config["evaluation"]["all_touched"] is False


def test_a_model_trained_from_fetched_imagenet_weights_matches_its_experiment(tmp_path):
    """The experiment says ``imagenet``; the job reads the fetched file. The checkpoint keeps
    the experiment's words, so prediction accepts it and loads no weights file."""
    from builtup.train.task import SegmentationTask

    fetched = tmp_path / "timm-mobilenetv2_050-imagenet.pth"
    torch.save(SegmentationTask(TRAINED_SPEC).model.encoder.state_dict(), fetched)
    spec = {**TRAINED_SPEC, "model": {**TRAINED_SPEC["model"], "encoder_weights": "imagenet"}}
    task = SegmentationTask(spec, weights_file=fetched)
    assert task.spec["model"]["encoder_weights"] == "imagenet"
    path = save_task(task, tmp_path / "m.ckpt")
    fetched.unlink()
    model = load_fold_model(path, UNIT_NORMALISATION, spec, "cpu")
    for name, value in task.model.state_dict().items():
        assert torch.equal(model.network.state_dict()[name], value), name


def test_an_experiment_pinned_to_the_cpu_predicts_on_the_cpu(monkeypatch):
    from builtup.deliver.predict import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", "cpu") == "cpu"
    assert resolve_device("auto", "gpu") == "cuda"
    assert resolve_device("cpu", "auto") == "cpu"


@pytest.mark.parametrize(
    ("bf16", "precision", "expected"),
    [
        (True, "auto", torch.bfloat16),
        (False, "auto", torch.float16),
        (True, "fp16", torch.float16),
        (False, "bf16", torch.bfloat16),
        (True, "fp32", None),
    ],
)
def test_prediction_autocasts_to_what_the_gpu_supports(monkeypatch, bf16, precision, expected):
    from builtup.deliver.predict import autocast_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert autocast_dtype(torch.device("cuda"), precision) is expected
    assert autocast_dtype(torch.device("cpu"), precision) is None


def city_map(tmp_path, name, boundary):
    """A city whose built-up half has probability ``boundary`` + 0.1 and background below."""
    prob = np.full((40, 40), round((boundary - 0.2) * PROB_SCALE), np.uint8)
    prob[:, 20:] = round((boundary + 0.1) * PROB_SCALE)
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 1
    return (
        write_raster(tmp_path / f"{name}.tif", prob, dtype="uint8", nodata=255),
        write_raster(tmp_path / f"{name}_mask.tif", mask, dtype="uint8", nodata=255),
    )


def test_each_training_city_is_scored_at_the_threshold_of_the_others(tmp_path):
    """The delivery threshold is tuned on every training city; a training city's own
    out-of-fold figure uses the one tuned on the other cities only."""
    import json

    from builtup.deliver.evaluate import evaluate_experiment
    from builtup.deliver.threshold import (
        best_probability_threshold,
        choose_threshold,
        probability_histograms,
    )

    maps = {name: city_map(tmp_path, name, b) for name, b in (("A", 0.3), ("B", 0.6), ("C", 0.6))}
    cities = sorted(maps)
    out = tmp_path / "threshold.json"
    result = choose_threshold(
        [maps[c][0] for c in cities], [maps[c][1] for c in cities], cities, "oof", out
    )
    oof = result["out_of_fold"]
    hist = {c: probability_histograms(*maps[c]) for c in cities}
    for c in cities:
        others = sum(h for other, h in hist.items() if other != c)
        assert oof[c] == best_probability_threshold(others)[0]
    assert 0.4 < oof["A"] <= 0.7  # from B and C: A's built-up half (0.4) is missed
    assert result["threshold"] == best_probability_threshold(sum(hist.values()))[0]
    baseline = tmp_path / "baseline.json"
    baseline.write_text("{}")
    summary = evaluate_experiment(
        [],
        [
            {"city": c, "split": "train", "probability": maps[c][0], "mask": maps[c][1]}
            for c in cities
        ],
        out,
        baseline,
        tmp_path / "scenes.tsv",
        tmp_path / "cities.tsv",
        tmp_path / "summary.json",
    )
    table = pd.read_csv(tmp_path / "cities.tsv", sep="\t").set_index("city")
    assert table.loc["A", "f1"] == 0 and table.loc["A", "threshold"] == pytest.approx(
        oof["A"], abs=1e-4
    )
    assert table.loc["B", "f1"] < 1 and table.loc["C", "f1"] < 1  # ties broken low: A's 0.3
    assert summary["thresholds_out_of_fold"] == oof
    assert "other training cities" in summary["tuned"]["train_out_of_fold"]
    assert json.loads(out.read_text())["threshold"] == result["threshold"]


def test_a_training_citys_quicklook_uses_its_out_of_fold_threshold(tmp_path, monkeypatch):
    import json

    from builtup.deliver import quicklook as figures

    raster = write_raster(tmp_path / "r.tif", np.full((3, 64, 64), 0.1, np.float32))
    prob = np.full((64, 64), round(0.5 * PROB_SCALE), np.uint8)
    folder = tmp_path / "predictions" / "38SMA_Najaf"
    prediction = write_raster(folder / "20150207_DES.tif", prob, dtype="uint8", nodata=255)
    threshold = tmp_path / "t.json"
    threshold.write_text(json.dumps({"threshold": 0.8, "out_of_fold": {"38SMA_Najaf": 0.3}}))
    shown = {}
    monkeypatch.setattr(
        figures, "sample_row", lambda axes, gray, pred, label, title: shown.update(pred=pred)
    )
    figures.plot_quicklook(raster, prediction, threshold, tmp_path / "q.png")
    assert shown["pred"].all()


class LogitModel(nn.Module):
    """Built-up logit ``value`` everywhere (logits 0 and ``value``)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
        logits[:, 1] = self.value
        return logits


def test_mean_logit_city_maps_keep_confident_acquisitions(tmp_path, scene):
    """Logits 12, -4, -4 have a mean of +1.33: built-up. From 8-bit probabilities, whose
    logits stop near +-6.2, the mean would be negative; logit rasters keep them."""
    from builtup.core.probability import LOGIT, read_logits

    path, _, wedge = scene
    predictions = []
    for k, value in enumerate((12.0, -4.0, -4.0)):
        predictor = ScenePredictor(
            [fold(LogitModel(value))], "linear3", window=256, overlap=64, encoding=LOGIT
        )
        predictions.append(
            predictor.predict_scene(path, tmp_path / f"{k}.tif") and tmp_path / f"{k}.tif"
        )
        with rasterio.open(predictions[-1]) as src:
            logits, valid = read_logits(src)
            assert src.dtypes[0] == "int16" and src.nodata == LOGIT.nodata
        np.testing.assert_array_equal(valid, ~wedge)
        assert (logits[valid] == value).all()
    aggregate_city(predictions, tmp_path / "city.tif", method="logit")
    values = read(tmp_path / "city.tif")[0]
    expected = round(PROB_SCALE / (1 + np.exp(-(12 - 8) / 3)))
    assert (values[~wedge] == expected).all() and expected > PROB_SCALE / 2
    # read back as probabilities and levels by the quicklooks, metrics and ensembles
    from builtup.deliver.threshold import probability_histograms

    mask = write_raster(tmp_path / "mask.tif", np.where(wedge, 255, 1), dtype="uint8", nodata=255)
    hist = probability_histograms(predictions[0], mask)
    assert hist[1, PROB_SCALE] == (~wedge).sum()


def polygon_map(tmp_path, rng):
    """A 1300 x 900 map (three strips) with blocks that cross the strip borders, one with a
    hole on a border, and speckle."""
    data = np.zeros((1300, 900), np.uint8)
    data[400:700, 100:400] = 200  # across row 512, with a hole across it
    data[500:530, 200:260] = 0
    data[1000:1100, 500:520] = 220  # across row 1024
    data[100:200, 600:700] = 240  # inside the first strip
    speckle = rng.uniform(size=data.shape) > 0.995
    data[speckle] = 250
    data[:, :10] = PROB_NODATA
    return write_raster(tmp_path / "map.tif", data, dtype="uint8", nodata=PROB_NODATA), data


def test_polygons_from_strips_are_those_of_the_whole_map(tmp_path, rng):
    import shapely
    from rasterio import features
    from shapely.geometry import shape

    path, data = polygon_map(tmp_path, rng)
    polygons, _ = builtup_polygons(path, 0.5)
    binary = ((data != PROB_NODATA) & (data >= 127)).astype(np.uint8)
    whole = [
        shape(g) for g, v in features.shapes(binary, mask=binary.astype(bool), transform=ORIGIN)
    ]
    assert len(polygons) == len(whole)
    assert sorted(round(p.area) for p in polygons) == sorted(round(p.area) for p in whole)
    assert shapely.unary_union(polygons).symmetric_difference(shapely.unary_union(whole)).area == 0
    assert all(p.is_valid for p in polygons)
    assert sum(len(p.interiors) for p in polygons) == 1  # the hole across the border


def test_polygons_hold_a_strip_of_the_map_not_the_whole(tmp_path, rng):
    import tracemalloc

    data = np.zeros((4096, 2048), np.uint8)
    data[1000:3000, 500:1500] = 200
    path = write_raster(tmp_path / "big.tif", data, dtype="uint8", nodata=PROB_NODATA)
    tracemalloc.start()
    polygons, _ = builtup_polygons(path, 0.5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(polygons) == 1
    assert peak < data.size, f"{peak / 2**20:.1f} MiB for a {data.size / 2**20:.0f} MiB map"
