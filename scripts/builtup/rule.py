"""The bridge between a rule's entry script and the library: logging and the one-line error."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from builtup.errors import InputError
from builtup.gpus import place_job

TORCH_RULES = {"train", "predict_scene"}  # rules whose CPU work runs in torch


def run(snakemake, work: Callable[[], object]) -> None:
    """Run ``work`` with logging to the rule's log; bad input exits 1 with one line on stderr."""
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
        if snakemake.rule in TORCH_RULES:
            import torch

            torch.set_num_threads(snakemake.threads)
        work()
    except InputError as err:
        logging.getLogger(snakemake.rule).error("%s", err)
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)
