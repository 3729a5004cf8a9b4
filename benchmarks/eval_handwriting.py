"""Accuracy on a labelled folder of handwriting photos: naive resizing vs detect.py's preprocessing.

    python benchmarks/make_handwriting_set.py            # once: benchmarks/out/handwriting/
    python benchmarks/eval_handwriting.py                # uses checkpoints/mnist_cnn.pt

The folder needs labels.csv (`file,label`). Three readings of the same images by the same model:
  naive           grayscale, resized to 28x28 (what most MNIST demos do)
  naive+invert    the same, inverted (dark ink on light paper -> light on dark)
  detect.py       convnet.preprocess, exactly what detect.py does
A blank verdict ("no digit found") counts as wrong. Wrong answers are listed with --show-errors.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from convnet.cli import UserError, run_cli  # noqa: E402
from convnet.model import DEFAULT_CHECKPOINT, load_checkpoint, model_from_checkpoint, to_model_input  # noqa: E402
from convnet.predict import label_images  # noqa: E402
from convnet.preprocess import read_gray  # noqa: E402


def naive_inputs(paths: list[str], image_size: int) -> np.ndarray:
    """Grayscale, resized to image_size x image_size, nothing else (uint8, light paper stays light)."""
    from skimage.transform import resize

    images = []
    for path in tqdm(paths, desc="naive resize", unit="img"):
        gray = read_gray(path).astype(np.float64)
        gray = gray / (255.0 if gray.max() > 1 else 1.0)
        images.append(np.round(resize(gray, (image_size, image_size), anti_aliasing=True) * 255))
    return np.stack(images).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="benchmarks/out/handwriting",
                        help="folder with images and labels.csv (default: benchmarks/out/handwriting)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                        help=f"checkpoint to evaluate (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--show-errors", action="store_true",
                        help="list the files detect.py's preprocessing gets wrong (default: off)")
    args = parser.parse_args()

    import torch

    folder = Path(args.folder)
    if not (folder / "labels.csv").is_file():
        raise UserError(f"{folder / 'labels.csv'}: not found (run benchmarks/make_handwriting_set.py)")
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [str(folder / row["file"]) for row in rows]
    labels = np.array([int(row["label"]) for row in rows])
    checkpoint = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint, args.checkpoint)
    size = int(checkpoint["image_size"])

    naive = naive_inputs(paths, size)
    with torch.inference_mode():
        results = {}
        for name, images in (("naive", naive), ("naive+invert", 255 - naive)):
            logits = model(to_model_input(torch.from_numpy(images), checkpoint["normalize"]))
            results[name] = logits.argmax(1).numpy() == labels

    predictions = list(tqdm(label_images(paths, model, checkpoint, torch.device("cpu"),
                                         workers=os.cpu_count() or 1),
                            total=len(paths), desc="detect.py preprocessing", unit="img"))
    answers = np.array([p.top[0][0] if p.top else -1 for p in predictions])
    results["detect.py"] = answers == labels
    blanks = sum(p.blank for p in predictions)
    failures = [p for p in predictions if p.error]

    print(f"{len(paths)} images in {folder}, checkpoint {args.checkpoint} "
          f"(MNIST test accuracy {checkpoint.get('test_accuracy')})")
    for name, correct in results.items():
        print(f"  {name:<14} {correct.mean():7.2%}  ({correct.sum()}/{len(correct)})")
    print(f"  detect.py said 'no digit found' for {blanks}, failed to read {len(failures)}")
    if args.show_errors:
        for prediction, label, answer in zip(predictions, labels, answers):
            if answer != label:
                print(f"    {prediction.path}: label {label}, read {answer if answer >= 0 else 'blank'}")


if __name__ == "__main__":
    run_cli(main)
