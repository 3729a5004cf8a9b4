"""Accuracy and time of main.py's presets, and its speed against the pytorch/examples recipe.

    python benchmarks/bench_train.py                                  # everything below
    python benchmarks/bench_train.py --what quick --seeds 0 1 2 3 4
    python benchmarks/bench_train.py --what fashion --fashion-dir data/fashion

Each run is `python main.py ...` in a subprocess, as a user starts it, with the checkpoint and
run folder under benchmarks/out/. Sections (--what):
  quick      `main.py --quick`: test accuracy, training seconds, whole-process seconds (the
             decode cache is warmed first, so decoding is not counted)
  default    `main.py`: final test accuracy (mean of the seeds) and training minutes
  fashion    `main.py` on Fashion-MNIST (convert.py --dataset fashion-mnist output), the same way
  reference  side by side: time to 99.0% test accuracy of `main.py --quick` against
             benchmarks/reference_pytorch_mnist.py, and the ratio
Times are medians over the seeds; accuracies are means (and the range). The machine is shared
and noisy, so run everything in one go and compare figures of the same run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

from timing import ROOT, run_script

sys.path.insert(0, str(ROOT))
from convnet.model import load_checkpoint  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "train"
TARGET = 0.99


def main_py(name: str, data_dir: str, seed: int, *flags: str) -> dict:
    """Run main.py once; its checkpoint's history plus the whole process's wall seconds."""
    checkpoint, run_dir = OUT / f"{name}-seed{seed}.pt", OUT / f"{name}-seed{seed}"
    wall, output = run_script("main.py", "--data-dir", data_dir, "--seed", seed, "--checkpoint", checkpoint,
                              "--run-dir", run_dir, *flags)
    print(f"  {name} seed {seed}: {output.strip().splitlines()[-1]}", flush=True)
    history = load_checkpoint(checkpoint)["history"]
    return {"seed": seed, "wall_seconds": wall, "history": history,
            "test_accuracy": history[-1]["test_accuracy"],
            "train_seconds": sum(row["train_seconds"] for row in history),
            "seconds_to_target": seconds_to(history, TARGET)}


def seconds_to(history: list[dict], target: float) -> float | None:
    """Training seconds until the end of the first epoch whose test accuracy reaches target."""
    total = 0.0
    for row in history:
        total += row["train_seconds"]
        if row["test_accuracy"] >= target:
            return total
    return None


def summary(runs: list[dict]) -> dict:
    accuracies = [run["test_accuracy"] for run in runs]
    return {"runs": len(runs), "accuracy_mean": statistics.mean(accuracies),
            "accuracy_min": min(accuracies), "accuracy_max": max(accuracies),
            "train_seconds_median": statistics.median(run["train_seconds"] for run in runs),
            "wall_seconds_median": statistics.median(run["wall_seconds"] for run in runs)}


def describe(name: str, stats: dict) -> str:
    return (f"{name}: test accuracy {100 * stats['accuracy_mean']:.2f}% mean of {stats['runs']} "
            f"({100 * stats['accuracy_min']:.2f}-{100 * stats['accuracy_max']:.2f}%), training "
            f"{stats['train_seconds_median']:.1f} s, whole process {stats['wall_seconds_median']:.1f} s (medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data", help="MNIST: lists from convert.py or IDX files (default: data)")
    parser.add_argument("--fashion-dir", default="data/fashion",
                        help="Fashion-MNIST converted with convert.py (default: data/fashion)")
    parser.add_argument("--what", nargs="+", default=["quick", "reference", "default", "fashion"],
                        choices=["quick", "reference", "default", "fashion"], help="sections to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds per preset (default: 0 1 2)")
    parser.add_argument("--device", default="cpu", help="main.py --device (default: cpu)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    from convnet.data import load_data
    load_data(args.data_dir)  # warm the decode caches: the timed runs measure training, not decoding
    if "fashion" in args.what:
        load_data(args.fashion_dir)

    results: dict = {"device": args.device}
    if "quick" in args.what or "reference" in args.what:
        quick = [main_py("quick", args.data_dir, seed, "--quick", "--device", args.device) for seed in args.seeds]
        results["quick"] = {**summary(quick), "seeds": quick}
        print(describe("quick", results["quick"]), flush=True)
    if "reference" in args.what:
        import reference_pytorch_mnist
        history = reference_pytorch_mnist.run(args.data_dir, epochs=8, stop_at=TARGET)
        reference_seconds = seconds_to(history, TARGET)
        ours = statistics.median(run["seconds_to_target"] or float("inf") for run in quick)
        results["reference"] = {"history": history, "seconds_to_target": reference_seconds,
                                "quick_seconds_to_target": None if ours == float("inf") else ours}
        if reference_seconds is None:
            print(f"reference: did not reach {100 * TARGET:.1f}% in {len(history)} epochs")
        elif ours == float("inf"):
            print(f"main.py --quick did not reach {100 * TARGET:.1f}% on most seeds: no ratio", flush=True)
        else:
            epochs = len(history)
            print(f"time to {100 * TARGET:.1f}% test accuracy: pytorch/examples recipe {reference_seconds:.0f} s "
                  f"({epochs} epochs), main.py --quick {ours:.1f} s: {reference_seconds / ours:.0f}x faster", flush=True)
    if "default" in args.what:
        default = [main_py("default", args.data_dir, seed, "--device", args.device) for seed in args.seeds]
        results["default"] = {**summary(default), "seeds": default}
        print(describe("default", results["default"]), flush=True)
    if "fashion" in args.what:
        fashion = [main_py("fashion", args.fashion_dir, seed, "--device", args.device) for seed in args.seeds]
        results["fashion"] = {**summary(fashion), "seeds": fashion}
        print(describe("fashion-mnist default", results["fashion"]), flush=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print(f"details: {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
