"""GPU placement for jobs that share one machine.

``snakemake --resources gpu=K`` caps how many GPUs the running jobs hold together, but does
not say which: every job would see all GPUs and start on device 0. A job that asks for
``n`` GPUs therefore claims ``n`` device ids itself, by an exclusive ``flock`` on one lock
file per device, and narrows ``CUDA_VISIBLE_DEVICES`` to them before CUDA starts. The locks
belong to the job's process, so they are freed when it ends, however it ends (SIGKILL too).

Under SLURM the scheduler has already placed the job (it sets ``CUDA_VISIBLE_DEVICES``),
so nothing is claimed there. Nor in the further ranks that Lightning's DDP launches by
re-running the job's script (``LOCAL_RANK`` > 0): they inherit the devices that the
launching process claimed and holds.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from builtup.core.errors import InputError

log = logging.getLogger(__name__)

POOL_VARIABLE = "BUILTUP_GPUS"  # device ids this machine's jobs may share, e.g. "0,1,2,3"
LOCKS_VARIABLE = "BUILTUP_GPU_LOCKS"  # folder of the lock files (default: under /tmp)


def gpu_pool(env=os.environ) -> list[str]:
    """The device ids to share: BUILTUP_GPUS, else CUDA_VISIBLE_DEVICES, else nvidia-smi's."""
    for variable in (POOL_VARIABLE, "CUDA_VISIBLE_DEVICES"):
        if variable in env:
            return [d.strip() for d in env[variable].split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    return result.stdout.split() if result.returncode == 0 else []


def lock_folder(env=os.environ) -> Path:
    default = Path(tempfile.gettempdir()) / f"builtup-gpu-locks-{os.getuid()}"
    folder = Path(env.get(LOCKS_VARIABLE, default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def claim_gpus(count: int, pool: list[str], folder: Path, poll_s: float = 1.0) -> list[str]:
    """Lock ``count`` devices of ``pool``, waiting while others hold them; returns their ids."""
    if count > len(pool):
        raise InputError(
            f"GPUs {','.join(pool) or '(none)'}",
            f"the job needs {count} GPUs but this machine offers {len(pool)}",
        )
    waited = False
    while True:
        claimed = {}
        for device in pool:
            fd = _try_lock(folder / f"gpu{device}.lock")
            if fd is not None:
                claimed[device] = fd
                if len(claimed) == count:
                    return list(claimed)  # their descriptors stay open: locked until exit
        for fd in claimed.values():
            os.close(fd)
        if not waited:
            log.info("waiting for %d free GPU(s) of %s", count, ",".join(pool))
            waited = True
        time.sleep(poll_s)


def place_job(count: int, env=os.environ) -> str | None:
    """Give this process ``count`` GPUs of its own; returns its CUDA_VISIBLE_DEVICES."""
    if count <= 0:
        return env.get("CUDA_VISIBLE_DEVICES")
    if env.get("LOCAL_RANK", "0") != "0":
        devices = env.get("CUDA_VISIBLE_DEVICES")
        log.info("DDP rank %s: GPUs of the launching process, %s", env["LOCAL_RANK"], devices)
        return devices
    if "SLURM_JOB_ID" in env:
        devices = env.get("CUDA_VISIBLE_DEVICES")
        log.info("GPUs placed by SLURM: CUDA_VISIBLE_DEVICES=%s", devices)
        return devices
    pool = gpu_pool(env)
    if not pool:
        log.info("no GPU on this machine: the job runs on the CPU")
        return None
    devices = ",".join(claim_gpus(count, pool, lock_folder(env)))
    env["CUDA_VISIBLE_DEVICES"] = devices
    log.info("claimed GPU(s) %s of %s", devices, ",".join(pool))
    return devices
