"""Turn the MNIST (or Fashion-MNIST) IDX files into PNG images and the lists main.py trains on.

    python convert.py                          # data/*.gz -> data/train/, data/test/, *.txt
    python convert.py --dataset fashion-mnist --data-dir data/fashion
    python convert.py --limit 1000             # first 1,000 images of each split

Missing files are downloaded from known mirrors and checked against the published checksums.
A second run on the same inputs does nothing. See convnet/convert.py for the output layout.
"""
import argparse
import os

from convnet.cli import run_cli
from convnet.convert import convert
from convnet.download import DATASETS


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Convert MNIST IDX files to PNG images plus train.txt/test.txt "
                    "(`<path> <label>` per line), downloading the files if missing.")
    parser.add_argument("--data-dir", default="data",
                        help="folder holding the IDX files; the output goes here too (default: data)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist",
                        help="which data set's files, mirrors and checksums to use (default: mnist)")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="convert only the first N images of each split (default: all)")
    parser.add_argument("--workers", type=positive_int, metavar="N", default=os.cpu_count() or 1,
                        help=f"processes writing PNGs (default: the CPU count, {os.cpu_count()} here)")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading missing files (default: download)")
    parser.add_argument("--mirror", action="append", default=[], metavar="URL",
                        help="base URL to fetch the .gz files from, tried before the built-in "
                             "mirrors; repeatable (default: built-in mirrors only)")
    parser.add_argument("--force", action="store_true",
                        help="convert again even if the output is up to date (default: off)")
    args = parser.parse_args()
    print(convert(args.data_dir, args.dataset, limit=args.limit, workers=args.workers,
                  force=args.force, allow_download=not args.no_download, mirrors=args.mirror))


if __name__ == "__main__":
    run_cli(main)
