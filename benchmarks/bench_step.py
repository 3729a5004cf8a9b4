"""Training images/s of one step, for each preset's network, in each memory layout and optimizer.

    python benchmarks/bench_step.py                 # CPU, the threads torch picks
    python benchmarks/bench_step.py --device cuda
    python benchmarks/bench_step.py --widths 24,48,96 32,64,128   # also wider default networks

Why main.py trains channels-last with the fused AdamW on the CPU as well as on CUDA, and why
--quick computes in bfloat16 on CPUs that have it natively: this prints, side by side in one
process, forward + backward + AdamW step throughput on random batches for {contiguous (NCHW),
channels-last} x {AdamW default, AdamW fused}, then channels-last + fused in bfloat16 autocast, and
for the default network that again with the weight average main.py updates after every step
(--ema-horizon). Each figure is the median of --repeats timings of --steps steps after a warm-up.
--widths adds the default network with other stage widths (channels-last + fused, float32 and
bfloat16): what a wider preset would cost.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from main import PRESETS, int_list  # noqa: E402

from convnet.model import ConvNet  # noqa: E402
from convnet.train import WeightAverage  # noqa: E402

NETWORK_KEYS = ("widths", "convs_per_stage", "kernel_size", "hidden", "strides", "dropout")


def images_per_second(network: dict, channels_last: bool, fused: bool, bf16: bool, average: bool,
                      device: str, batch_size: int, steps: int, repeats: int) -> float:
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = ConvNet(**network).to(device, memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    averaged = WeightAverage(model, PRESETS["default"]["ema_horizon"]) if average else None
    x = torch.randn(batch_size, 1, 28, 28, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def run(count: int) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(count):
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if averaged is not None:
                averaged.update(model)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started

    run(5)  # warm-up: oneDNN/cuDNN pick their kernels
    return batch_size * steps / statistics.median(run(steps) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=128, help="(default: 128, the presets')")
    parser.add_argument("--steps", type=int, default=20, help="steps per timing (default: 20)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure (default: 5)")
    parser.add_argument("--widths", nargs="*", type=int_list, default=[],
                        help="also time the default network with these stage widths, e.g. 24,48,96 (default: none)")
    args = parser.parse_args()
    print(f"device {args.device}, {torch.get_num_threads()} CPU threads, batch {args.batch_size}; "
          f"training images/s (median of {args.repeats})")
    print(f"{'network':<10} {'layout':<14} {'AdamW':<8} {'dtype':<9} {'weight avg':<11} {'images/s':>9} "
          f"{'vs its first row':>17}")
    variants = [(False, False, False, False), (False, True, False, False), (True, False, False, False),
                (True, True, False, False), (True, True, True, False)]  # (channels_last, fused, bf16, average)
    networks = {name: ({key: PRESETS[name][key] for key in NETWORK_KEYS}, variants) for name in PRESETS}
    networks["default"] = (networks["default"][0], variants + [(True, True, True, True)])
    for widths in args.widths:
        networks[",".join(map(str, widths))] = ({**networks["default"][0], "widths": widths}, variants[-2:])
    for name, (network, network_variants) in networks.items():
        baseline = None
        for channels_last, fused, bf16, average in network_variants:
            rate = images_per_second(network, channels_last, fused, bf16, average, args.device,
                                     args.batch_size, args.steps, args.repeats)
            baseline = baseline or rate
            print(f"{name:<10} {'channels-last' if channels_last else 'NCHW':<14} "
                  f"{'fused' if fused else 'default':<8} {'bfloat16' if bf16 else 'float32':<9} "
                  f"{'yes' if average else 'no':<11} {rate:9.0f} {rate / baseline:16.2f}x", flush=True)


if __name__ == "__main__":
    main()
