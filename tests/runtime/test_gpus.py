"""GPU placement on one machine: each job claims its own device ids (no GPU needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builtup.core.errors import InputError
from builtup.runtime.gpus import claim_gpus, gpu_pool, place_job

CLAIM = """
import os, sys, time
from builtup.runtime.gpus import place_job
print(place_job(int(sys.argv[1])), flush=True)
time.sleep(float(sys.argv[2]))
"""


def claimer(env, count=1, hold_s=3.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(count), str(hold_s)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def machine(tmp_path):
    """The environment of jobs on a machine with GPUs 0-3, sharing a lock folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}
    return {**env, "BUILTUP_GPUS": "0,1,2,3", "BUILTUP_GPU_LOCKS": str(tmp_path / "locks")}


def test_concurrent_jobs_get_distinct_devices(machine):
    jobs = [claimer(machine, count) for count in (1, 2, 1)]
    claimed = [job.stdout.readline().strip() for job in jobs]
    for job in jobs:
        job.wait()
    devices = [d for ids in claimed for d in ids.split(",")]
    assert sorted(devices) == ["0", "1", "2", "3"]
    assert sorted(len(ids.split(",")) for ids in claimed) == [1, 1, 2]


def test_a_job_waits_for_a_device_and_a_killed_job_frees_its_own(machine):
    holder = claimer({**machine, "BUILTUP_GPUS": "0,1"}, count=2, hold_s=60)
    assert holder.stdout.readline().strip() == "0,1"
    waiting = claimer({**machine, "BUILTUP_GPUS": "0,1"}, count=1, hold_s=0)
    time.sleep(1.5)
    assert waiting.poll() is None  # both devices are held
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert waiting.stdout.readline().strip() in {"0", "1"}
    assert waiting.wait(timeout=30) == 0


def test_more_gpus_than_the_machine_has(tmp_path):
    with pytest.raises(InputError, match="needs 3 GPUs but this machine offers 2"):
        claim_gpus(3, ["0", "1"], tmp_path)


def test_pool_sources():
    assert gpu_pool({"BUILTUP_GPUS": "2, 3", "CUDA_VISIBLE_DEVICES": "0"}) == ["2", "3"]
    assert gpu_pool({"CUDA_VISIBLE_DEVICES": "1,0"}) == ["1", "0"]
    assert gpu_pool({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_slurm_placement_is_left_alone():
    env = {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "3", "BUILTUP_GPUS": "0,1"}
    assert place_job(1, env) == "3"
    assert env["CUDA_VISIBLE_DEVICES"] == "3"


def test_cpu_jobs_and_gpu_less_machines_claim_nothing(tmp_path):
    env = {"BUILTUP_GPUS": "0", "BUILTUP_GPU_LOCKS": str(tmp_path)}
    assert place_job(0, env) is None and "CUDA_VISIBLE_DEVICES" not in env
    assert place_job(1, {"CUDA_VISIBLE_DEVICES": "", "BUILTUP_GPU_LOCKS": str(tmp_path)}) is None


RECORDING_WORKFLOW = """\
rule all:
    input:
        expand("placed/{job}.json", job=range(6)),


rule place:
    output:
        "placed/{job}.json",
    log:
        "logs/{job}.log",
    resources:
        gpu=1,
    script:
        "record.py"
"""

RECORD = """\
import json, os, time
from builtup.runtime.job import run


def record(inputs, outputs, params):
    start = time.time()
    time.sleep(1.5)
    placed = {"devices": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()}
    with open(outputs[0], "w") as out:
        json.dump(placed, out)


run(snakemake, record)
"""


def test_snakemake_resources_gpu_k_runs_k_jobs_on_their_own_devices(machine, tmp_path):
    (tmp_path / "Snakefile").write_text(RECORDING_WORKFLOW)
    (tmp_path / "record.py").write_text(RECORD)
    exe = Path(sys.executable).with_name("snakemake")
    result = subprocess.run(
        [str(exe), "--cores", "4", "--resources", "gpu=2"],
        cwd=tmp_path,
        env={**machine, "BUILTUP_GPUS": "0,1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [json.loads(p.read_text()) for p in sorted((tmp_path / "placed").glob("*.json"))]
    assert {job["devices"] for job in jobs} == {"0", "1"}
    for i, a in enumerate(jobs):
        for b in jobs[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["devices"] != b["devices"]
    overlapping = sum(
        a["start"] < b["end"] and b["start"] < a["end"]
        for i, a in enumerate(jobs)
        for b in jobs[i + 1 :]
    )
    assert overlapping >= 1  # two at a time really ran
    assert "claimed GPU(s)" in (tmp_path / "logs/0.log").read_text()


LAUNCH_RANK = """
import os, subprocess, sys
from builtup.runtime.gpus import place_job
print(place_job(2), flush=True)
child = "from builtup.runtime.gpus import place_job; print(place_job(2), flush=True)"
rank = subprocess.run(
    [sys.executable, "-c", child], env={**os.environ, "LOCAL_RANK": "1"},
    capture_output=True, text=True, timeout=20,
)
print(rank.stdout.strip(), flush=True)
"""


def test_ddp_ranks_inherit_the_devices_their_launcher_claimed(machine):
    """Lightning re-runs the job's script for rank 1: it must not claim (and wait) again."""
    result = subprocess.run(
        [sys.executable, "-c", LAUNCH_RANK],
        env={**machine, "BUILTUP_GPUS": "0,1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0,1", "0,1"]
