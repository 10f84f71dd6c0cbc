"""A real single-node SLURM on localhost, from Debian's packages, for the cluster tests.

Root only, no cgroups and no accounting database: munged runs as the munge user; slurmctld
and slurmd keep their state, spool, logs and pid files under a temporary folder. The
configuration must sit at SLURM's default place, /etc/slurm, because the Snakemake job step
drops SLURM_CONF before its nested ``srun``; a configuration already there is put back on
:meth:`LocalSlurm.stop`. The node declares one GPU
backed by /dev/null so that ``--gpus=1`` jobs run (with ``CUDA_VISIBLE_DEVICES=0``) on a
machine without one. Partitions ``cpu`` and ``gpu`` match the names in the workflow's slurm
profile. Without slurmdbd, job states come from ``squeue`` only, hence the high MinJobAge.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
MUNGE_SOCKET_DIR = Path("/run/munge")
CONF_DIR = Path("/etc/slurm")
MIN_JOB_AGE = 600


def missing_tools() -> list[str]:
    return [tool for tool in DAEMONS if shutil.which(tool) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slurm_conf(root: Path, host: str, cpus: int, memory_mb: int) -> str:
    return f"""\
ClusterName=builtup-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
MinJobAge={MIN_JOB_AGE}
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=1
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """Start with :meth:`start`, stop with :meth:`stop`; ``env`` points clients at the cluster.

    The node declares ``cpus`` CPUs and ``memory_mb`` whatever the hardware has
    (``config_overrides``), so that the profile's production-sized requests are accepted.
    """

    def __init__(self, root: Path, *, cpus: int = 16, memory_mb: int = 64000):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.conf = CONF_DIR / "slurm.conf"
        self.cpus, self.memory_mb = cpus, memory_mb
        self.started: list[Path] = []  # pid files of the daemons this object started

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60) -> None:
        for folder in ("state", "spool"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._install_conf(
            "slurm.conf", _slurm_conf(self.root, self.host, self.cpus, self.memory_mb)
        )
        self._install_conf(
            "gres.conf", f"AutoDetect=off\nNodeName={self.host} Name=gpu File=/dev/null\n"
        )
        self._start_munge()
        self._daemon(["slurmctld", "-i", "-f", str(self.conf)], self.root / "slurmctld.pid")
        self._wait(lambda: self._ok("scontrol", "ping"), timeout, "slurmctld to answer")
        self._daemon(["slurmd", "-f", str(self.conf)], self.root / "slurmd.pid")
        self._wait(self._node_idle, timeout, "the node to be idle")

    def stop(self) -> None:
        for pid_file in reversed(self.started):
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError):
                continue
        self.started.clear()
        for name in ("slurm.conf", "gres.conf"):
            saved = self.root / f"{name}.before"
            if saved.exists():
                shutil.move(saved, CONF_DIR / name)
            else:
                (CONF_DIR / name).unlink(missing_ok=True)

    def _install_conf(self, name: str, text: str) -> None:
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        if (CONF_DIR / name).exists():
            shutil.copy2(CONF_DIR / name, self.root / f"{name}.before")
        (CONF_DIR / name).write_text(text)

    def run(self, *args: str) -> str:
        return subprocess.run(
            args, env=self.env, capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def _start_munge(self) -> None:
        if subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0:
            return  # a munged is already serving this machine
        MUNGE_SOCKET_DIR.mkdir(exist_ok=True)
        shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
        pid_file = MUNGE_SOCKET_DIR / "munged.pid"
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, timeout=30)
        self.started.append(pid_file)

    def _daemon(self, command: list[str], pid_file: Path) -> None:
        subprocess.run(command, env=self.env, check=True, timeout=30)
        self.started.append(pid_file)

    def _ok(self, *command: str) -> bool:
        result = subprocess.run(command, env=self.env, capture_output=True, timeout=30)
        return result.returncode == 0

    def _node_idle(self) -> bool:
        result = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], env=self.env, capture_output=True, text=True
        )
        return result.returncode == 0 and result.stdout.split() and "idle" in result.stdout

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                logs = "\n".join(
                    log.read_text()[-2000:] for log in self.root.glob("*.log") if log.exists()
                )
                raise RuntimeError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.5)
