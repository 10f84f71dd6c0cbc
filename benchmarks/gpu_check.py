"""GPU acceptance check (``make gpu-check``): runs the ``gpu`` tests of
tests/workflow/test_gpu.py and prints one table (experiment, step time, peak GPU memory,
pass/fail).

Without a CUDA device it prints one line and exits 0. Record the table in
docs/benchmarks.md whenever a CUDA machine runs it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def print_table(rows: list[dict]) -> None:
    print(f"\n{'check':<44}{'step / run':>12}{'peak GPU':>10}  result")
    for row in rows:
        peak = f"{row['peak_gb']:.2f} GB" if row["peak_gb"] == row["peak_gb"] else "-"
        timing = (
            f"{row['step_ms']:.0f} ms" if row["step_ms"] < 1e4 else f"{row['step_ms'] / 1e3:.0f} s"
        )
        verdict = "pass" if row["ok"] else "FAIL"
        print(f"{row['experiment']:<44}{timing:>12}{peak:>10}  {verdict}  {row['detail']}")


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine: skipped")
        return 0
    names = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    print(f"gpu-check on {', '.join(names)}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as work:
        table = Path(work) / "table.jsonl"
        os.environ["BUILTUP_GPU_TABLE"] = str(table)
        # one process: the timings share the machine with no second test worker
        options = ["-m", "gpu", "-q", "-n", "0", "-p", "no:cacheprovider"]
        code = pytest.main([*options, str(REPO / "tests/workflow/test_gpu.py")])
        rows = (
            [json.loads(line) for line in table.read_text().splitlines()] if table.exists() else []
        )
    print_table(rows)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
