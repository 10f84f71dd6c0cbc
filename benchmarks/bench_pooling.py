"""LW-RefineNet on the CPU with its chained residual pooling's max-pools on contiguous or on
channels-last memory: the pools alone, then a training step and an inference pass of the
network, one thread by default, and whether outputs and gradients are the same.
Usage::

    python benchmarks/bench_pooling.py [--threads 1] [--batch 8] [--sizes 256 512]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from builtup.train.models import LWRefineNet

NETWORKS = {  # (width, head_stride) of the demo experiments' networks
    "demo": (64, 4),
    "fusion_demo": (32, 2),
}


def fastest(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def pools(shape, repeats: int) -> None:
    x = torch.randn(shape).relu()
    wide = x.contiguous(memory_format=torch.channels_last)
    plain = fastest(lambda: F.max_pool2d(x, 5, 1, 2), repeats)
    last = fastest(lambda: F.max_pool2d(wide, 5, 1, 2), repeats)
    same = torch.equal(F.max_pool2d(x, 5, 1, 2), F.max_pool2d(wide, 5, 1, 2))
    print(f"max-pool 5x5 {tuple(shape)}: {plain:.3f} s against {last:.3f} s", end="")
    print(f" ({plain / last:.1f}x), same values: {same}")


def network_pass(name: str, size: int, batch: int, channels_last: bool, repeats: int):
    """Seconds of a training step and of an inference pass; the outputs and gradients."""
    width, head_stride = NETWORKS[name]
    torch.manual_seed(0)
    network = LWRefineNet("mobilenetv2_050", 3, 2, width, False, head_stride)
    if not channels_last:  # the pools on the input's own (contiguous) memory
        for crp in network.refine:
            crp.pooled = crp.pool
    x = torch.randn(batch, 3, size, size)

    def step():
        network.zero_grad()
        network(x).sum().backward()

    def infer():
        with torch.inference_mode():
            return network(x)

    network.train()
    train = fastest(step, repeats)
    network.eval()
    inference = fastest(infer, repeats)
    return train, inference, infer(), [p.grad for p in network.parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), batch {args.batch}")
    for size in args.sizes:
        pools((args.batch, 64, size // 4, size // 4), args.repeats)
    for name in NETWORKS:
        for size in args.sizes:
            old = network_pass(name, size, args.batch, False, args.repeats)
            new = network_pass(name, size, args.batch, True, args.repeats)
            same = torch.equal(old[2], new[2]) and all(
                torch.equal(a, b) for a, b in zip(old[3], new[3], strict=True)
            )
            print(
                f"{name} {size} px: training step {old[0]:.2f} s against {new[0]:.2f} s"
                f" ({old[0] / new[0]:.2f}x), inference {old[1]:.2f} s against {new[1]:.2f} s"
                f" ({old[1] / new[1]:.2f}x), same outputs and gradients: {same}"
            )


if __name__ == "__main__":
    main()
