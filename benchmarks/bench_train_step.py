"""Training-step throughput of an experiment's model: fp32 against bf16-mixed + channels_last.

Times forward + backward + optimiser step on random 512 x 512 inputs, counts
the step's FLOPs with torch's FlopCounterMode and prints images/s, achieved
TFLOP/s and, with ``--peak-tflops``, the share of the device's peak.
Usage (GPU node)::

    python benchmarks/bench_train_step.py --experiment fpn_se_resnext50_db --device cuda \
        --batch 16 --peak-tflops 989
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from builtup.train.losses import WeightedSum
from builtup.train.models import build_model
from builtup.train.names import load_experiment

REPO = Path(__file__).resolve().parents[1]


def step_rate(experiment, device, batch, size, mixed: bool, steps: int, warmup: int):
    torch.manual_seed(0)
    channels = experiment.channels
    model = build_model(experiment.model, channels, None).to(device).train()
    loss_fn = WeightedSum(experiment.loss).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, channels, size, size, device=device)
    y = torch.randint(0, 2, (batch, size, size), device=device)
    if mixed:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step()
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return batch / seconds, counter.get_total_flops() / seconds / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment", default="fpn_se_resnext50_db")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak")
    args = parser.parse_args()
    spec = load_experiment(REPO / "config" / "experiments" / f"{args.experiment}.yaml")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.experiment}: batch {args.batch} x {spec.channels} x {args.size}^2 on {name}")
    print(f"{'mode':<28}{'images/s':>10}{'TFLOP/s':>9}{'of peak':>9}")
    rates = {}
    for label, mixed in (("fp32", False), ("bf16-mixed + channels_last", True)):
        images, tflops = step_rate(
            spec, device, args.batch, args.size, mixed, args.steps, args.warmup
        )
        rates[label] = images
        share = f"{100 * tflops / args.peak_tflops:.0f}%" if args.peak_tflops else "-"
        print(f"{label:<28}{images:>10.1f}{tflops:>9.1f}{share:>9}")
    print(f"speed-up: {rates['bf16-mixed + channels_last'] / rates['fp32']:.2f}x (target >= 2.5x)")


if __name__ == "__main__":
    main()
