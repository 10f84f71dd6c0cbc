"""The benchmarks run end to end on small scenes (figures are their job, not the tests')."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_bench_prepare_runs_every_step_with_the_codec_asked(tmp_path):
    codec = {"compress": "deflate"}
    result = run_benchmark(
        "bench_prepare.py",
        "--size",
        "768",
        "--repeat",
        "2",
        "--threads",
        "1",
        "--codec",
        json.dumps(codec),
        "--keep",
        "--out",
        str(tmp_path),
    )
    lines = result.stdout.splitlines()
    assert "median of 2 runs" in lines[0] and '"deflate"' in lines[0]
    steps = [line.split()[0] for line in lines[2:]]
    assert steps[:6] == ["generate", "compose", "rasterize", "cut", "tile", "stage"]
    assert "stage / raw copy" in result.stdout
    with rasterio.open(tmp_path / "prepare_768" / "scene.tif") as scene:
        assert scene.profile["compress"] == "deflate"
    assert (tmp_path / "prepare_768" / "tiles" / "images.npy").stat().st_size > 0


def test_bench_stack_stacks_warped_and_unwarped_acquisitions(tmp_path):
    result = run_benchmark(
        "bench_stack.py",
        *("--size", "512", "--acquisitions", "4", "--keep", "--out", str(tmp_path)),
    )
    assert "stack of 4 acquisitions of 512^2 px (2 warped by 0.5 px)" in result.stdout
    assert "peak RSS" in result.stdout
    with rasterio.open(tmp_path / "stack_512" / "stack.tif") as stack:
        vv = stack.read()[0::2]
    count = np.isfinite(vv).sum(axis=0)
    assert (count[count > 0] == 4).mean() > 0.9  # the shifted VRTs are read and warped
    assert np.nanmax(np.abs(vv[1] - vv[0])) > 0  # bilinear warping changes the shifted ones


def test_bench_predict_with_a_null_network_prints_the_floor_and_both_predictors(tmp_path):
    result = run_benchmark(
        "bench_predict.py",
        *("--size", "768", "--network", "null", "--out", str(tmp_path)),
    )
    rows = {line[:40].strip(): line[40:].split() for line in result.stdout.splitlines()[2:-1]}
    assert list(rows) == [
        "floor: read the 3-band raster once",
        "floor: write a uint8 probability COG",
        "floor: read + write",
        "predictor, 1 model, TTA none",
        "predictor, 4 models, TTA rot90",
    ]
    wall, network, rest, ratio, _ = map(float, rows["predictor, 4 models, TTA rot90"])
    assert 0 < network < wall and rest == pytest.approx(wall - network, abs=0.11) and ratio > 0


def test_bench_predict_runs_both_predictors_of_an_experiment(tmp_path):
    """The path a GPU node runs (``--experiment ... --device cuda``), here on the CPU."""
    result = run_benchmark(
        "bench_predict.py", *("--size", "512", "--experiment", "demo", "--out", str(tmp_path))
    )
    assert "ours (windows 512/128, blended, COG)" in result.stdout
    assert "seed (2048 tiles to files, predict, merge)" in result.stdout
    assert "seed / ours:" in result.stdout


def test_bench_loader_draws_tiles_and_scene_windows():
    result = run_benchmark(
        "bench_loader.py",
        *("--size", "1024", "--samples", "16", "--workers", "1"),
    )
    windows = [line.split() for line in result.stdout.splitlines() if line.startswith("windows")]
    assert [(w[0] + " " + w[1], w[-3]) for w in windows] == [
        (f"windows {size}", workers) for size in (512, 896) for _ in range(2) for workers in "01"
    ]
    assert all(float(w[-1]) > 0 for w in windows)
    assert "read one random 512 px window (GDAL cache 16 MB): GeoTIFF" in result.stdout


def test_bench_pooling_compares_both_memory_layouts_of_the_demo_networks():
    result = run_benchmark("bench_pooling.py", "--batch", "1", "--sizes", "64", "--repeats", "1")
    lines = result.stdout.splitlines()
    assert any(line.startswith("max-pool 5x5") and "same values: True" in line for line in lines)
    for name in ("demo", "fusion_demo"):
        (line,) = [line for line in lines if line.startswith(f"{name} 64 px")]
        assert "same outputs and gradients: True" in line
