"""Scene prediction and city aggregation at full size: throughput and peak RSS.

1. One 10980 x 10980 demo scene is generated and composed to 3 bands.
2. Our path (``ScenePredictor``: windows blended in a rolling buffer, COG out)
   against the 3rd place's path (cut 2048 px tiles to files, predict each tile,
   write tile files, merge them), same model (the demo experiment's network)
   and device, each in its own process.
3. City aggregation of four full-size acquisitions, one on a shifted 10.0027 m grid.

With ``--network null`` it measures the predictor's own cost instead: the
network is a 1 x 1 convolution (negligible work), and the run prints the I/O
floor (reading the 3-band raster once, strip by strip; writing a uint8
probability COG of the predictor's own output) beside the predictor's time
for 1 model and for 4 fold models with rot90 TTA, and their ratio to the floor.

Usage: ``python benchmarks/bench_predict.py [--size 10980] [--experiment demo] [--device cpu]
[--network null]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SETUP = """
import dataclasses, numpy as np, torch
from builtup.core.probability import PROBABILITY
from builtup.train.names import load_experiment
from builtup.train.models import build_model
from builtup.core.recipes import get_recipe
from builtup.predict.scene import FoldModel, ScenePredictor
torch.set_num_threads(os.cpu_count())
experiment = load_experiment('{repo}/config/experiments/{experiment}.yaml')
channels = experiment.channels
network = build_model(experiment.model, channels, None).to('{device}').eval()
prediction = dataclasses.replace(experiment.prediction, window=512, overlap=128, batch_size=8)
zeros, ones = np.zeros((channels, 1, 1), np.float32), np.ones((channels, 1, 1), np.float32)
model = FoldModel(network, zeros, ones)
"""

OURS = (
    SETUP
    + """
predictor = ScenePredictor([model], experiment.recipe, 'none', prediction, '{device}', PROBABILITY)
predictor.predict_scene('{work}/scene.tif', '{work}/ours.tif')
"""
)

SEED = (
    SETUP
    + """
import rasterio
from rasterio.merge import merge
from rasterio.windows import Window
tiles = []
with rasterio.open('{work}/scene.tif') as src:
    profile = src.profile
    for row in range(0, src.height, 2048):
        for col in range(0, src.width, 2048):
            window = Window(col, row, min(2048, src.width - col), min(2048, src.height - row))
            path = '{work}/seed_tiles/in_%d_%d.tif' % (row, col)
            tile_profile = {{**profile, 'width': window.width, 'height': window.height,
                             'transform': src.window_transform(window)}}
            with rasterio.open(path, 'w', **tile_profile) as dst:
                dst.write(src.read(window=window))
            tiles.append(path)
outputs = []
recipe = get_recipe(experiment.recipe)
for path in tiles:
    with rasterio.open(path) as src:
        x = src.read()
        prof = src.profile
    valid = x.any(axis=0)
    h, w = x.shape[1:]
    ph, pw = -h % 32, -w % 32
    inputs = np.pad(recipe(x, valid), ((0, 0), (0, ph), (0, pw)), mode='reflect')
    with torch.no_grad():
        logits = network(torch.from_numpy(inputs[None]).to('{device}'))
        prob = torch.softmax(logits, 1)[0, 1, :h, :w]
    out = path.replace('in_', 'out_')
    with rasterio.open(out, 'w', **{{**prof, 'count': 1, 'dtype': 'float32'}}) as dst:
        dst.write(prob.cpu().numpy(), 1)
    outputs.append(out)
sources = [rasterio.open(p) for p in outputs]
mosaic, transform = merge(sources)
with rasterio.open('{work}/seed.tif', 'w', **{{**sources[0].profile, 'width': mosaic.shape[2],
                   'height': mosaic.shape[1], 'transform': transform}}) as dst:
    dst.write(mosaic)
"""
)

ACQUISITIONS = """
import numpy as np, rasterio, shutil
from affine import Affine
from builtup.core.rasters import strip_windows
with rasterio.open('{work}/ours.tif') as src:
    profile = {{**src.profile, 'driver': 'GTiff'}}
rng = np.random.default_rng(0)
for k in range(1, 4):
    prof = dict(profile)
    if k == 3:
        t = prof['transform']
        prof['transform'] = Affine(10.0027, 0, t.c + 2.16, 0, -10.0027, t.f - 1.84)
    with rasterio.open('{work}/acq%d.tif' % k, 'w', **prof) as dst:
        for window in strip_windows(prof['height'], prof['width']):
            shape = (1, int(window.height), int(window.width))
            dst.write(rng.integers(0, 255, shape, dtype=np.uint8), window=window)
"""

AGGREGATE = """
from builtup.predict.aggregate import aggregate_city
paths = ['{work}/ours.tif'] + ['{work}/acq%d.tif' % k for k in (1, 2, 3)]
aggregate_city(paths, '{work}/city.tif', 'mean', 0.5)
"""


NULL_SETUP = """
import time
import dataclasses, numpy as np, torch
from builtup.core.probability import PROBABILITY
from builtup.config.experiment import PredictionSettings
from builtup.core.recipes import get_recipe
from builtup.predict.scene import FoldModel, ScenePredictor
torch.set_num_threads(os.cpu_count())
recipe = 'db3'
channels = get_recipe(recipe).channels


class TimedConv(torch.nn.Module):
    # a 1x1 convolution that adds up the time spent in it (the network's share)

    seconds = 0.0

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 2, 1)

    def forward(self, x):
        start = time.perf_counter()
        out = self.conv(x)
        if out.is_cuda:
            torch.cuda.synchronize()
        TimedConv.seconds += time.perf_counter() - start
        return out


def null_model(seed):
    torch.manual_seed(seed)
    network = TimedConv().to('{device}').eval()
    mean = np.full((channels, 1, 1), -15.0, np.float32)
    return FoldModel(network, mean, np.full((channels, 1, 1), 5.0, np.float32))
"""

FLOOR_READ = """
import time, rasterio
from builtup.core.rasters import strip_windows
start = time.perf_counter()
with rasterio.open('{work}/scene.tif') as src:
    for window in strip_windows(src.height, src.width):
        src.read(window=window)
print('SECONDS', time.perf_counter() - start)
"""

FLOOR_WRITE = """
import time, rasterio
from builtup.core.probability import probability_raster
from builtup.core.rasters import strip_windows
with rasterio.open('{work}/null_1.tif') as src:
    values, profile = src.read(1), src.profile
start = time.perf_counter()
with probability_raster(profile, '{work}/written.tif') as dst:
    for window in strip_windows(values.shape[0], values.shape[1]):
        rows = slice(int(window.row_off), int(window.row_off + window.height))
        dst.write(values[None, rows], window=window)
print('SECONDS', time.perf_counter() - start)
"""

NULL_PREDICT = (
    NULL_SETUP
    + """
models = [null_model(seed) for seed in range({models})]
prediction = PredictionSettings('blend', 512, 128, None, 'auto', 'all', 8, '{device}')
predictor = ScenePredictor(models, recipe, '{tta}', prediction, '{device}', PROBABILITY)
start = time.perf_counter()
predictor.predict_scene('{work}/scene.tif', '{work}/null_{models}.tif')
print('SECONDS', time.perf_counter() - start, 'NETWORK', TimedConv.seconds)
"""
)


def run_timed(code: str) -> tuple[float, float, float]:
    """(seconds the step reports for its own work, of which in the network, peak RSS MB) of a
    step in its own process."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import os\n" + code], env=env, stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("step failed")
    seconds = float(out.split("SECONDS", 1)[1].split()[0])
    network = float(out.split("NETWORK", 1)[1].split()[0]) if "NETWORK" in out else 0.0
    return seconds, network, usage.ru_maxrss / 1024


def null_network(names: dict, pixels: float) -> None:
    """The predictor's cost beside the I/O floor, with a network that costs nothing."""
    read, _, read_rss = run_timed(FLOOR_READ.format(**names))
    runs = {}
    for models, tta in ((1, "none"), (4, "rot90")):
        runs[(models, tta)] = run_timed(NULL_PREDICT.format(**names, models=models, tta=tta))
    write, _, write_rss = run_timed(FLOOR_WRITE.format(**names))
    floor = read + write
    header = f"{'wall s':>8}{'network s':>11}{'rest s':>8}{'rest x floor':>14}{'RSS MB':>8}"
    print(f"{'step':<40}{header}")
    print(f"{'floor: read the 3-band raster once':<40}{read:>8.1f}{'':>33}{read_rss:>8.0f}")
    print(f"{'floor: write a uint8 probability COG':<40}{write:>8.1f}{'':>33}{write_rss:>8.0f}")
    print(f"{'floor: read + write':<40}{floor:>8.1f}{'':>19}{1:>14.2f}")
    for (models, tta), (seconds, network, rss) in runs.items():
        label = f"predictor, {models} model{'s' if models > 1 else ''}, TTA {tta}"
        rest = seconds - network
        times = f"{seconds:>8.1f}{network:>11.1f}{rest:>8.1f}{rest / floor:>14.2f}"
        print(f"{label:<40}{times}{rss:>8.0f}")
    print(
        f"rest: the predictor's wall time less the time inside the network (a 1x1 convolution, "
        f"timed per call); target: within 1.5x the floor ({pixels:.0f} Mpx)"
    )


def run_measured(code: str) -> tuple[float, float]:
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    proc = subprocess.Popen([sys.executable, "-c", "import os\n" + code], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("step failed")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    parser.add_argument(
        "--network",
        choices=("model", "null"),
        default="model",
        help="null: a 1x1 convolution, to measure the predictor's cost against the I/O floor",
    )
    args = parser.parse_args()
    work = Path(args.out) / f"predict_{args.size}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "seed_tiles").mkdir(parents=True)
    names = {"work": work, "repo": REPO, "experiment": args.experiment, "device": args.device}
    prepare = f"""
from pathlib import Path
from builtup.demo import generator as demo
from builtup.prepare.compose import compose_three_band
city = demo.TRAIN_CITIES[0]
acq = demo.acquisitions(city, 0, 1, {args.size})[0]
paths = demo.write_acquisition(acq, demo.build_layout(0, 0, {args.size}), Path('{work}/raw'), 0, 0)
compose_three_band(paths['vv'], paths['vh'], '{work}/scene.tif')
"""
    run_measured(prepare)
    pixels = args.size**2 / 1e6
    if args.network == "null":
        print(
            f"scene {args.size}^2 px ({pixels:.0f} Mpx), recipe db3, device {args.device}, "
            f"{os.cpu_count()} CPUs, network: a 1x1 convolution"
        )
        null_network(names, pixels)
        shutil.rmtree(work)
        return
    print(
        f"scene {args.size}^2 px ({pixels:.0f} Mpx), experiment {args.experiment}, "
        f"device {args.device}, {os.cpu_count()} CPUs, no TTA"
    )
    print(f"{'path':<44}{'wall s':>9}{'Mpx/s':>8}{'peak RSS MB':>13}")
    rows = {}
    for name, code in (
        ("ours (windows 512/128, blended, COG)", OURS),
        ("seed (2048 tiles to files, predict, merge)", SEED),
    ):
        seconds, rss = run_measured(code.format(**names))
        rows[name] = seconds
        print(f"{name:<44}{seconds:>9.1f}{pixels / seconds:>8.2f}{rss:>13.0f}")
    ours, seed = rows.values()
    print(f"seed / ours: {seed / ours:.2f}x (target >= 10x)")
    run_measured(ACQUISITIONS.format(**names))
    seconds, rss = run_measured(AGGREGATE.format(**names))
    print(
        f"{'aggregate 4 acquisitions (1 warped)':<44}{seconds:>9.1f}{pixels / seconds:>8.2f}"
        f"{rss:>13.0f}   (target RSS < 2000 MB)"
    )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
