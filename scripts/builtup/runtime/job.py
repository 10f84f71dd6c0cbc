"""How a job starts: logging to the rule's log, its GPUs, torch's threads, the one-line error.

Every entry script in ``scripts/`` has one shape: ``main(inputs, outputs, params)`` maps the
rule's declared files and parameters onto one library call, and ``run(snakemake, main)``
runs it. The entry script says whether the job's CPU work runs in torch (``uses_torch``);
this module names no rule.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from builtup.core.errors import InputError
from builtup.runtime.gpus import place_job


def run(snakemake, main: Callable, *, uses_torch: bool = False) -> None:
    """Run ``main(inputs, outputs, params)`` with logging to the rule's log; bad input exits 1
    with one line on stderr (the rule's log keeps the traceback)."""
    os.environ.setdefault("GDAL_NUM_THREADS", str(snakemake.threads))
    log_path = snakemake.log[0] if snakemake.log else None
    # DDP re-runs the script in one process per further device: all of them append
    if log_path and os.environ.get("LOCAL_RANK", "0") == "0":
        open(log_path, "w").close()
    handlers = [logging.FileHandler(log_path, mode="a")] if log_path else [logging.StreamHandler()]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    try:
        place_job(int(snakemake.resources.get("gpu", 0)))
        if uses_torch:
            import torch

            torch.set_num_threads(snakemake.threads)
        main(snakemake.input, snakemake.output, snakemake.params)
    except InputError as err:  # the traceback goes to the log only, for a developer
        logging.getLogger(snakemake.rule).error("%s", err, exc_info=bool(log_path))
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)
