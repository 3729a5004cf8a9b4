"""How fast `python detect.py` labels a folder and one image, and that it keeps main.py's accuracy.

    python benchmarks/bench_detect.py                       # data/test (10,000 PNGs), checkpoints/mnist_cnn.pt
    python benchmarks/bench_detect.py --photos benchmarks/out/handwriting --runs 3

Each measurement is a whole `python detect.py ...` process, start-up included, as a user runs
it: the folder of converted test images (--json, answers compared with data/test.txt), one of
those images alone, and optionally a folder of photos (make_handwriting_set.py). Medians of
--runs runs, every run printed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from timing import ROOT, run_script

sys.path.insert(0, str(ROOT))
from convnet.model import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402


def median_of(runs: int, label: str, *args: str) -> tuple[float, str]:
    times, output = [], ""
    for _ in range(runs):
        seconds, output = run_script("detect.py", *args)
        times.append(seconds)
        print(f"  {label}: {seconds:.2f} s", flush=True)
    return statistics.median(times), output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data", help="converted MNIST: test/ and test.txt (default: data)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help=f"(default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--photos", help="also time a folder of photos, e.g. benchmarks/out/handwriting")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (default: 3)")
    args = parser.parse_args()

    data_dir = Path(args.data_dir)
    labels = {}
    for line in (data_dir / "test.txt").read_text().splitlines():
        name, label = line.rsplit(maxsplit=1)
        labels[str(data_dir / name)] = int(label)
    folder = data_dir / "test"
    seconds, output = median_of(args.runs, f"{folder}/ ({len(labels)} images)", str(folder), "--json",
                                "--checkpoint", args.checkpoint)
    answers = [json.loads(line) for line in output.splitlines()]
    correct = sum(answer["label"] == labels[answer["path"]] for answer in answers)
    reported = load_checkpoint(args.checkpoint)["test_accuracy"]
    print(f"folder: {len(answers)} images in {seconds:.1f} s ({len(answers) / seconds:.0f} images/s, median of "
          f"{args.runs}); accuracy {100 * correct / len(answers):.2f}%, main.py reported {100 * reported:.2f}%")

    one = str(folder / "00000.png")
    seconds, _ = median_of(max(args.runs, 5), "one image", one, "--checkpoint", args.checkpoint)
    print(f"one image: {seconds:.2f} s for the whole process (median of {max(args.runs, 5)})")

    if args.photos:
        count = sum(1 for p in Path(args.photos).iterdir() if p.suffix.lower() in (".png", ".jpg"))
        seconds, _ = median_of(args.runs, f"{args.photos} ({count} photos)", args.photos,
                               "--checkpoint", args.checkpoint)
        print(f"photos: {count} in {seconds:.1f} s ({count / seconds:.0f} images/s, median of {args.runs})")


if __name__ == "__main__":
    main()
