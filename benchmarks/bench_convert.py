"""How long `python convert.py` takes: a full conversion of all 70,000 images, and the no-op rerun.

    python benchmarks/bench_convert.py --source ../shared/data/mnist
    python benchmarks/bench_convert.py --source ../shared/data/fashion-mnist --dataset fashion-mnist --runs 3

The four .gz files of --source are linked into a folder under benchmarks/out/convert/ and
converted there, as a user runs it, in a subprocess: `--runs` first conversions, each into a
fresh folder (what a new user's `python convert.py` does; deleting the previous run's 70,000
files is not timed, it varies from 1 to 30 s on a busy disk), then `--runs` reruns with
nothing to do. The last conversion stays in benchmarks/out/convert/<dataset>/ for the other
benchmarks. Prints the median and every run.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

from timing import ROOT, run_script

sys.path.insert(0, str(ROOT))
from convnet.idx import SPLIT_FILES  # noqa: E402


def timed(arguments: list[str]) -> float:
    seconds, output = run_script("convert.py", *arguments)
    print(f"  {seconds:5.2f} s  {output.strip().splitlines()[-1]}", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="data", help="folder holding the four .gz files (default: data)")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"],
                        help="convert.py --dataset (default: mnist)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (default: 5)")
    parser.add_argument("--workers", type=int, default=0, help="convert.py --workers (default: its own default)")
    args = parser.parse_args()

    sources = [(Path(args.source) / f"{name}.gz").resolve() for pair in SPLIT_FILES.values() for name in pair]
    for source in sources:
        if not source.is_file():
            sys.exit(f"error: {source} not found")
    work = ROOT / "benchmarks" / "out" / "convert" / args.dataset

    command = ["--data-dir", str(work), "--dataset", args.dataset, "--no-download",
               *(["--workers", str(args.workers)] if args.workers else [])]

    def empty_work_folder() -> None:
        """The --source files linked into an empty `work` folder, as a user's data/ before converting."""
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for source in sources:
            (work / source.name).symlink_to(source)

    print(f"first conversion into an empty folder, {args.runs} runs:")
    full = []
    for _ in range(args.runs):
        empty_work_folder()
        full.append(timed(command))
    print(f"no-op rerun, {args.runs} runs:")
    noop = [timed(command) for _ in range(args.runs)]
    print(f"convert.py {args.dataset}: full conversion {statistics.median(full):.1f} s "
          f"(median of {len(full)}, {min(full):.1f}-{max(full):.1f}), no-op rerun "
          f"{statistics.median(noop):.2f} s (median of {len(noop)})")


if __name__ == "__main__":
    main()
