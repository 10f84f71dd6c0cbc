"""The workflow's SLURM profile on a real single-node SLURM (see slurm_cluster.py).

The tests need root and Debian's slurmctld, slurmd, slurm-client and munge packages, which
`.ci/run` installs. Elsewhere they skip, except in CI, where a missing cluster is a failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import fiona
import pytest
import yaml

from conftest import REPO, SMALL_DAG_CITIES, TINY, Sandbox
from slurm_cluster import LocalSlurm, missing_tools

pytestmark = pytest.mark.slow

PROFILE = REPO / "workflow" / "profiles" / "slurm"
# Without slurmdbd, states come from squeue; short status intervals keep the test quick.
TEST_SETTINGS = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--latency-wait",
    "5",
]
HARD_TIMEOUT_S = 900
DDP_FOLD = "38SLF_Mosul"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_tools()
    if missing or os.geteuid() != 0:
        why = f"a local SLURM needs root and {', '.join(missing) or 'the SLURM packages'}"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; .ci/run installs them")
        pytest.skip(why)
    slurm = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        slurm.start()
        yield slurm
    finally:
        slurm.stop()


def run_snakemake(cluster: LocalSlurm, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake in its own process group, killed with SIGKILL if it outlives the hard limit.

    A status query that never answers makes Snakemake wait forever and ignore SIGTERM.
    """
    exe = Path(sys.executable).with_name("snakemake")
    process = subprocess.Popen(
        [str(exe), "--profile", str(PROFILE), *TEST_SETTINGS, *args],
        cwd=cwd,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=HARD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"snakemake did not finish in {HARD_TIMEOUT_S} s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, "")


def test_whole_dag_through_the_slurm_profile(cluster, tmp_path):
    box = Sandbox(tmp_path)
    # accelerator auto: the jobs ask SLURM for a GPU and fall back to the CPU inside them
    box.small_dag(SMALL_DAG_CITIES, {**TINY, "epochs": 1, "accelerator": "auto"})
    # two DDP processes in one job, on the CPU (gloo), as several GPUs would train
    ddp = {**TINY, "epochs": 1, "accelerator": "cpu", "devices": 2}
    ddp["sampler"] = {**TINY["sampler"], "samples_per_epoch": 12}  # 2 ranks x 1 batch of 6
    (box.root / "config/experiments/tiny_ddp.yaml").write_text(yaml.safe_dump(ddp))
    box.config["experiments"] = ["tiny", "tiny_ddp"]
    box.write_config()

    shapefile = "results/submission/tiny/38SLD_Tikrit.shp"
    ddp_model = f"results/models/tiny_ddp/{DDP_FOLD}/model.ckpt"
    result = run_snakemake(cluster, box.root, shapefile, ddp_model)
    assert result.returncode == 0, result.stdout[-6000:]

    with fiona.open(box.root / shapefile) as src:
        assert src.crs.to_epsg() == 32638 and len(src) > 0

    jobs = cluster.run("scontrol", "show", "job", "-o").splitlines()
    ddp_jobs = [line for line in jobs if "rule_train" in line and "tiny_ddp" in line]
    gpu_jobs = [line for line in jobs if "Partition=gpu" in line and line not in ddp_jobs]
    cpu_jobs = [line for line in jobs if "Partition=cpu" in line]
    assert len(gpu_jobs) == 2 + 3  # a model per fold; every scene (the threshold needs OOF)
    assert all(re.search(r"TresPerJob=\S*gres:gpu:1", line) for line in gpu_jobs)
    assert len(ddp_jobs) == 1 and "JobState=COMPLETED" in ddp_jobs[0]
    assert all("JobState=COMPLETED" in line for line in gpu_jobs + cpu_jobs)
    assert cpu_jobs and not any("gres:gpu" in line for line in cpu_jobs)
    train_log = (box.root / "results/logs/train/tiny/38SLF_Mosul.log").read_text()
    assert "GPUs placed by SLURM: CUDA_VISIBLE_DEVICES=0" in train_log
    assert_two_ddp_ranks(box.root, DDP_FOLD)


def assert_two_ddp_ranks(root: Path, fold: str) -> None:
    """Two ranks trained, each on its half of the epoch's 12 draws, each with augmentation
    streams of its own, and delivered one checkpoint."""
    log = (root / f"results/logs/train/tiny_ddp/{fold}.log").read_text()
    for rank in (1, 2):
        assert f"training process {rank} of 2 on cpu" in log, log[-3000:]
        assert f"process {rank} of 2: 6 of 12 draws per epoch" in log, log[-3000:]
    seeds = {rank: set(re.findall(rf"draws seed (\d+) \(process {rank}\b", log)) for rank in (1, 2)}
    assert seeds[1] and seeds[2] and not seeds[1] & seeds[2], log[-3000:]
    folder = root / f"results/models/tiny_ddp/{fold}"
    assert (folder / "model.ckpt").is_file()
    assert len((folder / "metrics.csv").read_text().splitlines()) == 2  # one epoch


FLAKY_WORKFLOW = """\
rule all:
    input:
        "flaky.txt",
        "broken.txt",


rule flaky:
    output:
        "flaky.txt",
    log:
        "logs/flaky.log",
    shell:
        "if [ -e tried ]; then echo ok > {output}; "
        "else touch tried; echo 'first attempt fails' > {log}; exit 1; fi"


rule broken:
    output:
        "broken.txt",
    log:
        "logs/broken.log",
    shell:
        "echo 'attempt fails for good: disk on fire' > {log}; exit 3"
"""


def test_retries_and_a_permanent_failure(cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(FLAKY_WORKFLOW)
    result = run_snakemake(cluster, tmp_path, "--keep-going")

    assert result.returncode != 0
    assert (tmp_path / "flaky.txt").read_text() == "ok\n"  # failed once, then retried
    assert not (tmp_path / "broken.txt").exists()
    assert "attempt fails for good: disk on fire" in result.stdout  # the job's log is shown
    states = {
        rule: [
            re.search(r"JobState=(\S+)", line).group(1)
            for line in cluster.run("scontrol", "show", "job", "-o").splitlines()
            if f"{tmp_path}/.snakemake/slurm_logs/rule_{rule}/" in line
        ]
        for rule in ("flaky", "broken")
    }
    assert sorted(states["flaky"]) == ["COMPLETED", "FAILED"]
    assert states["broken"] == ["FAILED"] * 3  # first attempt and the profile's two retries
