"""Every command block of the README runs as written: make targets and Snakemake runs as
dry runs (they would set up or train), the other commands for real on the demo data."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, Sandbox

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def readme_commands() -> list[str]:
    """The command lines of the README's ``bash`` blocks, comments left out."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_readme_has_command_blocks():
    programs = {shlex.split(line)[0] for line in readme_commands()}
    assert {"make", "snakemake", "builtup"} <= programs


@pytest.fixture(scope="module")
def box(tmp_path_factory, tiny_demo):
    """A fresh clone's copy (its profile as shipped), with the demo data already generated
    where the config says."""
    sandbox = Sandbox(tmp_path_factory.mktemp("readme"), shipped_profile=True)
    sandbox.config["demo"]["enabled"] = False
    sandbox.config["demo"]["size"] = 256
    sandbox.write_config()
    (sandbox.root / "resources").mkdir()
    (sandbox.root / "resources/demo").symlink_to(tiny_demo)
    return sandbox


@pytest.mark.parametrize("line", readme_commands())
def test_a_readme_command_runs(line, box):
    words = shlex.split(line)
    program, args = words[0], words[1:]
    if program == ".":
        # the environment `make setup` creates
        assert args == [".venv/bin/activate"] and "VENV ?= .venv" in (REPO / "Makefile").read_text()
        return
    if program == "make":
        command, cwd = ["make", "-n", *args], REPO
    elif program == "snakemake":
        command, cwd = [str(BIN / "snakemake"), *args, "-n"], box.root
    else:
        command, cwd = [str(BIN / program), *args], box.root
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{line}\n{result.stdout[-1500:]}\n{result.stderr[-3000:]}"


def test_make_run_trains_and_predicts_on_one_core_per_job(box):
    """The demo's command: training and prediction jobs side by side, one thread each."""
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "run"], cwd=REPO, capture_output=True, text=True
    )
    command = shlex.split(dry.stdout.strip().splitlines()[-1])
    assert command[0] == ".venv/bin/snakemake", dry.stdout
    result = subprocess.run(
        [str(BIN / "snakemake"), *command[1:], "-n"],
        cwd=box.root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = re.split(r"^(?:local)?rule ", result.stdout + result.stderr, flags=re.M)
    ran = {job.split(":")[0]: job for job in jobs if job.startswith(("train:", "predict_scene:"))}
    assert set(ran) == {"train", "predict_scene"}
    threads = [
        line
        for job in jobs
        if job.startswith(("train:", "predict_scene:"))
        for line in job.splitlines()
        if line.strip().startswith("threads:")
    ]
    assert threads == [], threads
