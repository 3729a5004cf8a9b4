"""Tell the truth about this machine's PyTorch: versions, GPUs, and whether they compute correctly.

    python verify_torch_GPU.py                 # human-readable report
    python verify_torch_GPU.py --json          # one JSON object, for scripts
    python verify_torch_GPU.py --require-gpu   # exit 1 when no GPU is usable (e.g. in a GPU CI job)

On every CUDA device (and MPS on Apple silicon) a matrix product and a convolution are run and
compared with the CPU result; a mismatch is a failure (exit 1). Without a GPU the report says
so plainly and exits 0, unless --require-gpu is given.
"""
from __future__ import annotations

import argparse
import json

from convnet.cli import run_cli


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 fine, 1 an accelerator computed wrong results, or no GPU with --require-gpu.")
    parser.add_argument("--json", action="store_true",
                        help="print the report as one JSON object (default: text)")
    parser.add_argument("--require-gpu", action="store_true",
                        help="exit with status 1 when no GPU is usable (default: off, exit 0)")
    args = parser.parse_args()

    from convnet.gpu_check import format_report, verify

    report = verify()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if not report["ok"] or (args.require_gpu and not report["gpu_found"]):
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
