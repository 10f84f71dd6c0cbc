"""Scene prediction, city aggregation, polygons and metrics on synthetic rasters."""

import re
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from torch import nn

from builtup.config.experiment import PredictionSettings
from builtup.core.bands import stack_descriptions
from builtup.core.errors import InputError
from builtup.core.probability import PROB_NODATA, PROB_SCALE, PROBABILITY
from builtup.core.recipes import get_recipe
from builtup.predict.aggregate import aggregate_city
from builtup.predict.scene import (
    TTA,
    FoldModel,
    ScenePredictor,
    blend_weights,
    load_fold_model,
)
from builtup.train.models import build_model

from conftest import ORIGIN, network, tiny_experiment, write_raster


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


STITCHING = {
    "stitch": "blend",
    "window": 512,
    "overlap": 128,
    "kept": None,
    "precision": "auto",
    "fold_models": "all",
    "batch_size": 8,
    "device": "cpu",
}


def cpu_predictor(models, recipe, tta="none", encoding=PROBABILITY, **stitching):
    """A CPU predictor of the fold ``models``, stitching as :data:`STITCHING` with changes."""
    settings = PredictionSettings(**{**STITCHING, **stitching})
    return ScenePredictor(models, recipe, tta, settings, "cpu", encoding)


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
    predictor = cpu_predictor(
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
        cpu_predictor([fold(network)], "linear3", window=window, overlap=overlap).predict_scene(
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
    predictor = cpu_predictor(
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
    crop = cpu_predictor([fold(EdgeModel())], "linear3", window=320, stitch="crop", kept=256)
    crop.predict_scene(path, tmp_path / "crop.tif")
    values = read(tmp_path / "crop.tif")[0]
    assert (values[~wedge] == low).all()  # no pixel comes from a window's outer 32 px
    blend = cpu_predictor([fold(EdgeModel())], "linear3", window=320, overlap=64)
    blend.predict_scene(path, tmp_path / "blend.tif")
    assert (read(tmp_path / "blend.tif")[0][~wedge] > low).any()  # the scene's own edges


@pytest.mark.parametrize("kept", [None, 0, 400, 255])
def test_crop_stitching_needs_a_centre_that_fits_the_window(kept):
    with pytest.raises(ValueError, match="kept"):
        cpu_predictor([fold(PixelModel())], "linear3", window=320, stitch="crop", kept=kept)


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
    predictor = cpu_predictor([fold(network)], "minmax_pow3", window=1024, overlap=0)
    predictor.predict_scene(path, tmp_path / "p.tif")
    values = read(tmp_path / "p.tif")[0]
    assert np.abs(values[~wedge].astype(int) - expected[~wedge]).max() <= 1


def stack_acquisitions(rng, nodata_cols=40, acquisitions=3):
    """(A, 2, 300, 400) VV and VH in dB, NaN where none has data (the first columns) and
    where the last acquisition has none (the bottom rows)."""
    series = rng.normal(-12, 3, (acquisitions, 2, 300, 400)).astype("float32")
    series[-1, :, 250:] = np.nan
    series[..., :nodata_cols] = np.nan
    return series


def write_stack(path, rng=None, series=None):
    """A temporal stack raster of the acquisitions ``series`` (default: drawn from ``rng``)."""
    series = stack_acquisitions(rng) if series is None else series
    stack = series.reshape(-1, *series.shape[2:])
    write_raster(path, stack, nodata=float("nan"))
    with rasterio.open(path, "r+") as dst:
        dst.descriptions = stack_descriptions([f"s{k}" for k in range(len(series))])
    return path, stack


def test_a_stack_model_predicts_the_stack_pixel_by_pixel(tmp_path, rng):
    path, stack = write_stack(tmp_path / "stack.tif", rng)
    network = PixelModel(channels=4)
    predictor = cpu_predictor([fold(network, 4)], "stack_mean_std", window=256, overlap=64)
    predictor.predict_scene(path, tmp_path / "p.tif")
    values, profile, _ = read(tmp_path / "p.tif")
    assert profile["transform"] == ORIGIN and values.shape == (300, 400)
    assert (values[:, :40] == PROB_NODATA).all() and (values[:, 40:] != PROB_NODATA).all()
    features = get_recipe("stack_mean_std")(stack, ~np.isnan(stack).all(axis=0))
    with torch.no_grad():
        logits = network(torch.from_numpy(features[None, :, :, 40:]))
    expected = np.rint(torch.softmax(logits, 1)[0, 1].numpy() * PROB_SCALE)
    assert np.abs(values[:, 40:].astype(int) - expected).max() <= 1


def test_a_fusion_model_ignores_the_order_and_absent_acquisitions(tmp_path, rng):
    """The same acquisitions in another order, or with one more that has no data at all,
    predict the same map: the pooling is order-free and leaves absent acquisitions out."""
    torch.manual_seed(0)
    settings = network("lwrefinenet", "mobilenetv2_050", width=16)
    fused = build_model(settings, 2, None, fused=True).eval()
    norm = np.full((2, 1, 1), -12, np.float32), np.full((2, 1, 1), 3, np.float32)
    predictor = cpu_predictor([FoldModel(fused, *norm)], "series_db2", window=128, overlap=32)
    series = stack_acquisitions(rng)
    absent = np.full_like(series[:1], np.nan)
    variants = {
        "as is": series,
        "reordered": series[[2, 0, 1]],
        "one without data": np.concatenate([series[:1], absent, series[1:]]),
    }
    maps = {}
    for name, acquisitions in variants.items():
        path, _ = write_stack(tmp_path / f"{name}.tif", series=acquisitions)
        predictor.predict_scene(path, tmp_path / f"p {name}.tif")
        maps[name] = read(tmp_path / f"p {name}.tif")[0].astype(int)
    assert (maps["as is"][:, :40] == PROB_NODATA).all()
    assert (maps["as is"][:, 40:] != PROB_NODATA).all()
    for name in ("reordered", "one without data"):
        assert np.abs(maps[name] - maps["as is"]).max() <= 1, name


def test_a_recipe_of_the_other_kind_of_raster_is_refused(tmp_path, rng, scene):
    stack_path, _ = write_stack(tmp_path / "stack.tif", rng)
    scene_model = cpu_predictor([fold(PixelModel())], "linear3", window=256, overlap=64)
    with pytest.raises(InputError, match="is a stack raster, and recipe linear3 reads a scene"):
        scene_model.predict_scene(stack_path, tmp_path / "p.tif")
    stack_model = cpu_predictor([fold(PixelModel(4), 4)], "stack_mean_std", window=256)
    with pytest.raises(InputError, match="is a scene raster, and recipe stack_mean_std reads"):
        stack_model.predict_scene(scene[0], tmp_path / "q.tif")


def test_rot90_makes_the_passes_of_the_3rd_places_rotations():
    """The 3rd place's ``Rotate90(angles=[90, -90, 180])``: ttach adds the identity, so four
    passes, the same rotations (modulo 360 degrees) as ``rot90``."""
    import ttach

    def rotations(compose):
        return sorted(angle % 360 for (angle,) in compose.aug_transform_parameters)

    seeds = ttach.Compose([ttach.Rotate90(angles=[90, -90, 180])])
    assert rotations(seeds) == rotations(TTA["rot90"]()) == [0, 90, 180, 270]
    assert "rot90_without_identity" not in TTA


@pytest.mark.parametrize("tta", ["flips", "rot90", "d4"])
def test_tta_round_trips_the_identity(tmp_path, scene, tta):
    path, *_ = scene
    network = PixelModel()
    plain = cpu_predictor([fold(network)], "linear3", "none", window=256, overlap=64)
    augmented = cpu_predictor([fold(network)], "linear3", tta, window=256, overlap=64)
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
    cpu_predictor([fold(first), fold(second)], "linear3", window=256, overlap=64).predict_scene(
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
    aggregate_city([a, b], tmp_path / "mean.tif", "mean", 0.5)
    values, profile, _ = read(tmp_path / "mean.tif")
    assert profile["transform"] == ORIGIN
    assert abs(int(values[100, 150]) - round(0.6 * PROB_SCALE)) <= 1
    assert values[100, 10] == round(0.4 * PROB_SCALE)  # only b has data there
    assert values[299, 299] == round(0.8 * PROB_SCALE)  # b ends before a's far corner
    aggregate_city([a, b], tmp_path / "vote.tif", "vote", 0.5)
    votes = read(tmp_path / "vote.tif")[0]
    assert votes[100, 150] == PROB_SCALE  # one of two says built-up: N-1 of N


def test_logit_aggregation_is_the_mean_logit_where_acquisitions_have_data(tmp_path):
    a = prob_raster(tmp_path / "a.tif", 0.95, ORIGIN, nodata_cols=50)
    b = prob_raster(tmp_path / "b.tif", 0.3, ORIGIN)
    c = prob_raster(tmp_path / "c.tif", 0.2, ORIGIN)
    aggregate_city([a, b, c], tmp_path / "logit.tif", "logit", 0.5)
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
    one = aggregate_city([c], tmp_path / "one.tif", "logit", 0.5)
    assert one["method"] == "logit"
    np.testing.assert_array_equal(read(tmp_path / "one.tif")[0], read(c)[0])
    with pytest.raises(ValueError, match="mean, logit, vote"):
        aggregate_city([c], tmp_path / "x.tif", "median", 0.5)


def test_aggregation_of_one_acquisition_is_identity(tmp_path):
    a = prob_raster(tmp_path / "a.tif", 0.3, ORIGIN, nodata_cols=20)
    aggregate_city([a], tmp_path / "one.tif", "mean", 0.5)
    np.testing.assert_array_equal(read(tmp_path / "one.tif")[0], read(a)[0])


def test_non_overlapping_acquisitions_are_refused(tmp_path):
    a = prob_raster(tmp_path / "a.tif", 0.3, ORIGIN)
    far = Affine(10, 0, ORIGIN.c + 50_000, 0, -10, ORIGIN.f)
    b = prob_raster(tmp_path / "b.tif", 0.3, far)
    with pytest.raises(InputError, match="does not overlap"):
        aggregate_city([a, b], tmp_path / "c.tif", "mean", 0.5)
    assert not (tmp_path / "c.tif").exists()


def test_checkpoint_that_does_not_match_the_experiment(tmp_path):
    from builtup.train.task import SegmentationTask

    trained = tiny_experiment(tmp_path)
    path = save_task(SegmentationTask(trained), tmp_path / "m.ckpt")
    summary = {
        "normalisation": {
            "db3": {"mean": [0, 0, 0], "std": [1, 1, 1]},
            "db5": {"mean": [0] * 5, "std": [1] * 5},
        }
    }
    assert load_fold_model(path, summary, trained, "cpu").network is not None
    with pytest.raises(InputError, match="does not match the experiment: recipe"):
        load_fold_model(path, summary, replace(trained, recipe="db5"), "cpu")
    other = replace(trained, model=network("Unet", "resnet18"))
    with pytest.raises(InputError, match="does not match the experiment: model"):
        load_fold_model(path, summary, other, "cpu")
    with pytest.raises(InputError, match="checkpoint does not exist"):
        load_fold_model(tmp_path / "none.ckpt", summary, trained, "cpu")


def test_smp_fpn_predicts_a_scene_whose_sides_are_not_multiples_of_32(tmp_path, rng):
    import segmentation_models_pytorch as smp

    image = rng.gamma(4.4, 0.05 / 4.4, (3, 300, 517)).astype("float32")
    path = write_raster(tmp_path / "small.tif", image)
    network = smp.FPN(encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=2)
    out = tmp_path / "p.tif"
    cpu_predictor([fold(network)], "linear3", window=512, overlap=64).predict_scene(path, out)
    values, profile, _ = read(out)
    assert values.shape == (300, 517) and (values != PROB_NODATA).all()
    assert profile["transform"] == ORIGIN and (profile["width"], profile["height"]) == (517, 300)


UNIT_NORMALISATION = {"normalisation": {"db3": {"mean": [0, 0, 0], "std": [1, 1, 1]}}}


def save_task(task, path, **extra):
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": {"experiment": task.experiment.to_dict(), "data": task.data},
            **extra,
        },
        path,
    )
    return path


def test_prediction_needs_no_encoder_weights_file(tmp_path):
    """A checkpoint holds every weight: its encoder's starting weights are not read again."""
    from builtup.train.task import SegmentationTask

    trained = tiny_experiment(tmp_path)
    weights = tmp_path / "encoder.pth"
    torch.save(SegmentationTask(trained).model.encoder.state_dict(), weights)
    experiment = replace(trained, model=replace(trained.model, encoder_weights=str(weights)))
    task = SegmentationTask(experiment)
    path = save_task(task, tmp_path / "m.ckpt")
    weights.unlink()
    model = load_fold_model(path, UNIT_NORMALISATION, experiment, "cpu")
    for name, value in task.model.state_dict().items():
        assert torch.equal(model.network.state_dict()[name], value), name


@pytest.mark.parametrize("unsaved_buffer", [False, True])
def test_a_trained_network_is_rebuilt_exactly_without_drawing_weights(
    tmp_path, monkeypatch, unsaved_buffer
):
    """Built on the meta device and given the checkpoint's tensors; a network with a buffer
    that state dicts leave out is built for real, so that the buffer has its values."""
    from builtup.train import checkpoint as checkpoints
    from builtup.train.task import SegmentationTask

    def with_unsaved_buffer(*args, **kwargs):
        built = build_model(*args, **kwargs)
        built.register_buffer("grid", torch.arange(4.0), persistent=False)
        return built

    if unsaved_buffer:
        monkeypatch.setattr(checkpoints, "build_model", with_unsaved_buffer)
    task = SegmentationTask(tiny_experiment(tmp_path))
    network = checkpoints.load_trained(save_task(task, tmp_path / "m.ckpt")).network
    tensors = [*network.parameters(), *network.buffers()]
    assert all(tensor.device.type == "cpu" for tensor in tensors)
    if unsaved_buffer:
        assert torch.equal(network.grid, torch.arange(4.0))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(network.eval()(x), task.model.eval()(x))


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_carrying_a_pickle_payload_is_refused_unrun(tmp_path):
    from builtup.train.task import SegmentationTask

    marker = tmp_path / "payload-ran"
    trained = tiny_experiment(tmp_path)
    path = save_task(SegmentationTask(trained), tmp_path / "shared.ckpt", extra=Payload(marker))
    with pytest.raises(InputError, match="refused: the checkpoint holds objects") as err:
        load_fold_model(path, UNIT_NORMALISATION, trained, "cpu")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_checkpoint_trained_with_another_normalisation_is_refused(tmp_path):
    from builtup.train.task import SegmentationTask

    data = {"normalisation": {"mean": [1, 2, 3], "std": [1, 1, 1]}, "tiles_sha256": "x"}
    trained = tiny_experiment(tmp_path)
    path = save_task(SegmentationTask(trained, data), tmp_path / "m.ckpt")
    with pytest.raises(InputError, match="another normalisation"):
        load_fold_model(path, UNIT_NORMALISATION, trained, "cpu")


def test_prediction_window_must_be_a_multiple_of_32():
    import yaml

    from builtup.config.schema import check_against_schema

    from conftest import REPO

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["prediction"]["window"] = 300
    with pytest.raises(InputError, match="prediction.window: 300 is not a multiple of 32"):
        check_against_schema(config, "config.schema.yaml", "config")


def test_a_model_trained_from_fetched_imagenet_weights_matches_its_experiment(tmp_path):
    """The experiment says ``imagenet``; the job reads the fetched file. The checkpoint keeps
    the experiment's words, so prediction accepts it and loads no weights file."""
    from builtup.train.task import SegmentationTask

    trained = tiny_experiment(tmp_path)
    fetched = tmp_path / "timm-mobilenetv2_050-imagenet.pth"
    torch.save(SegmentationTask(trained).model.encoder.state_dict(), fetched)
    experiment = replace(trained, model=replace(trained.model, encoder_weights="imagenet"))
    task = SegmentationTask(experiment, weights_file=fetched)
    assert task.hparams["experiment"]["model"]["encoder_weights"] == "imagenet"
    path = save_task(task, tmp_path / "m.ckpt")
    fetched.unlink()
    model = load_fold_model(path, UNIT_NORMALISATION, experiment, "cpu")
    for name, value in task.model.state_dict().items():
        assert torch.equal(model.network.state_dict()[name], value), name


def test_an_experiment_pinned_to_the_cpu_predicts_on_the_cpu(monkeypatch):
    from builtup.predict.scene import resolve_device

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
    from builtup.predict.scene import autocast_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert autocast_dtype(torch.device("cuda"), precision) is expected
    assert autocast_dtype(torch.device("cpu"), precision) is None


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
        predictor = cpu_predictor(
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
    aggregate_city(predictions, tmp_path / "city.tif", "logit", 0.5)
    values = read(tmp_path / "city.tif")[0]
    expected = round(PROB_SCALE / (1 + np.exp(-(12 - 8) / 3)))
    assert (values[~wedge] == expected).all() and expected > PROB_SCALE / 2
    # read back as probabilities and levels by the quicklooks, metrics and ensembles
    from builtup.deliver.threshold import probability_histograms

    mask = write_raster(tmp_path / "mask.tif", np.where(wedge, 255, 1), dtype="uint8", nodata=255)
    hist = probability_histograms(predictions[0], mask)
    assert hist[1, PROB_SCALE] == (~wedge).sum()


def spoilt_checkpoints(task) -> dict:
    """Checkpoint contents that are not a checkpoint of this workflow, each in its own way."""
    good = {
        "state_dict": task.state_dict(),
        "hyper_parameters": {"experiment": task.experiment.to_dict(), "data": task.data},
    }
    experiment = task.experiment.to_dict()
    unknown = {**experiment, "model": {**experiment["model"], "architecture": "UNetXL"}}
    wider = {**experiment, "model": {**experiment["model"], "options": {"width": 24}}}
    return {
        "a tensor": (torch.zeros(3), "holds a Tensor, not a mapping (checkpoints map"),
        "a list": ([1, 2], "holds a list, not a mapping"),
        "spec: {}": ({"spec": {}}, "no experiment settings"),
        "hyper_parameters: spec": ({**good, "hyper_parameters": {"spec": {}}}, "builtup 0.1"),
        "unknown architecture": (
            {**good, "hyper_parameters": {"experiment": unknown}},
            "holds experiment settings of another version: unknown architecture 'UNetXL'",
        ),
        "another width": (
            {**good, "hyper_parameters": {"experiment": wider, "data": task.data}},
            "weights do not fit the experiment it names: size mismatch for",
        ),
        "state_dict of strings": ({**good, "state_dict": {"a": "b"}}, "not a mapping of names"),
    }


@pytest.mark.parametrize(
    "fault",
    [
        "a tensor",
        "a list",
        "spec: {}",
        "hyper_parameters: spec",
        "unknown architecture",
        "another width",
        "state_dict of strings",
    ],
)
def test_a_malformed_checkpoint_is_refused_in_one_line(tmp_path, fault):
    from builtup.train.task import SegmentationTask, load_task

    task = SegmentationTask(
        tiny_experiment(
            tmp_path,
            model={
                "architecture": "lwrefinenet",
                "encoder": "mobilenetv2_050",
                "options": {"width": 16},
            },
        )
    )
    content, message = spoilt_checkpoints(task)[fault]
    path = tmp_path / "model.ckpt"
    torch.save(content, path)
    with pytest.raises(InputError, match=re.escape(message)) as err:
        load_task(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "checksum", "message"),
    [
        (torch.zeros(3), None, "holds a Tensor, not a mapping (encoder weights files map"),
        ([torch.zeros(3)], None, "holds a list, not a mapping"),
        ({"conv.weight": torch.zeros(3)}, "", "enc.pth.sha256: is not a sha256 checksum"),
        (Payload("marker"), None, "refused: the encoder weights file holds objects other"),
    ],
    ids=["tensor", "list", "empty checksum", "pickle payload"],
)
def test_a_malformed_weights_file_is_refused_in_one_line(tmp_path, content, checksum, message):
    path = tmp_path / "enc.pth"
    torch.save(content, path)
    if checksum is not None:
        (tmp_path / "enc.pth.sha256").write_text(checksum)
    spec = network("lwrefinenet", "mobilenetv2_050", str(path), width=16)
    with pytest.raises(InputError, match=re.escape(message)) as err:
        build_model(spec, 3, None)
    assert "\n" not in str(err.value) and "enc.pth" in str(err.value)
    assert not (tmp_path / "marker").exists()
