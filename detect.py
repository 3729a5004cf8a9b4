"""Label photos, scans or converted MNIST images of handwritten digits with a trained checkpoint.

    python detect.py my_digit.jpg                     # my_digit.jpg: 7 (99.2%)
    python detect.py photos/ 'scans/**/*.png' --topk 3
    python detect.py data/test --json > answers.jsonl
    python detect.py my_digit.jpg --plot why.png      # what the model saw, and its probabilities

Photos (dark or coloured ink on light paper, any size, off-centre, uneven light) are turned into
the MNIST look first (convnet/preprocess.py); images already in the model's format pass
unchanged. Exit status: 0 when every image was read (blank images, reported as "no digit
found", count as read), 1 when any image could not be read, 2 for a bad checkpoint or option.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from convnet.cli import UserError, run_cli
from convnet.model import DEFAULT_CHECKPOINT
from convnet.preprocess import MAX_PIXELS

PLOT_LIMIT = 16  # rows in the --plot figure; more would be unreadable


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 all images read, 1 some image failed, 2 bad checkpoint or option.")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE",
                        help="image files, folders (searched recursively) or glob patterns "
                             "(quote them, e.g. 'scans/*.jpg')")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                        help=f"checkpoint written by main.py (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--topk", type=int, default=1,
                        help="also show the next most likely classes, K in all (default: 1)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per image: path, label, name, confidence, "
                             "top, blank (default: off, one text line per image)")
    parser.add_argument("--plot", metavar="OUT.png",
                        help=f"save a figure of the first {PLOT_LIMIT} images: input, model "
                             "input, class probabilities (default: no figure)")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N, mps or auto (default: auto, a GPU if present)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="images per model call (default: 256)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes that decode and preprocess images "
                             f"(default: {os.cpu_count() or 1}, the number of CPU cores)")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help="refuse images with more pixels than this, checked before "
                             f"decoding (decompression bombs) (default: {MAX_PIXELS})")
    args = parser.parse_args()
    for name in ("topk", "batch_size", "workers", "max_pixels"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    from tqdm import tqdm

    from convnet.model import load_checkpoint, model_from_checkpoint
    from convnet.predict import (collect_inputs, format_json, format_text, label_images,
                                 plot_predictions, resolve_device)

    device = resolve_device(args.device)
    # torch.load warns about odd pickle protocols before refusing a file; the refusal itself
    # is the one line the user needs.
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.serialization")
    checkpoint = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint, args.checkpoint).to(device)
    class_names = [str(name) for name in checkpoint.get("class_names") or range(10)]
    paths, problems = collect_inputs(args.inputs)
    for argument, why in problems:
        print(f"error: {argument}: {why}", file=sys.stderr)

    formatter = format_json if args.json else format_text
    failed = len(problems)
    plotted = []
    progress = tqdm(total=len(paths), unit="img", desc="labelling", disable=len(paths) < 500,
                    file=sys.stderr, leave=False)
    for prediction in label_images(paths, model, checkpoint, device, args.batch_size,
                                   args.workers, args.topk, keep_images=bool(args.plot),
                                   max_pixels=args.max_pixels):
        progress.update()
        if prediction.error:
            failed += 1
            progress.write(f"error: {prediction.path}: {prediction.error}", file=sys.stderr)
        else:
            print(formatter(prediction, class_names))
        if args.plot and len(plotted) < PLOT_LIMIT:
            plotted.append(prediction)
    progress.close()
    if args.plot and plotted:
        plot_predictions(plotted, class_names, args.plot)
        print(f"saved {args.plot} ({len(plotted)} image{'s' * (len(plotted) != 1)})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
