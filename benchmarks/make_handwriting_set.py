"""Make a labelled set of "real handwriting as people hand it over" to measure detect.py on.

    python benchmarks/make_handwriting_set.py                  # 1000 images -> benchmarks/out/handwriting/
    python benchmarks/make_handwriting_set.py --count 300 --seed 1

The digits are MNIST *test* digits (never the training images; MNIST's test writers are
disjoint from its training writers), redrawn the way a phone photo or a scan of a pen-written
digit looks, which is very unlike MNIST itself:
  - the digit is traced again with a pen: its skeleton is drawn with a round nib whose width
    is random relative to the digit (fine liner to marker), or the shape is kept filled;
  - slanted, rotated and stretched; small or large on a larger canvas, off-centre;
  - dark or coloured ink (black, blue, red, green, pencil grey) on white, cream, grey or
    bluish paper; fine paper grain and blotchy texture; uneven light (gradient, vignette);
  - blur, sensor noise; saved as JPEG (quality 40-95) or PNG, RGB or grayscale.
labels.csv lists `file,label`. Everything goes to benchmarks/out/ (git-ignored).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from convnet.cli import UserError, atomic_write, run_cli  # noqa: E402
from convnet.idx import load_split  # noqa: E402

INKS = {  # RGB 0..1, and how opaque the ink is at most
    "black": ((0.05, 0.05, 0.07), 1.0), "blue": ((0.08, 0.15, 0.55), 1.0),
    "dark-blue": ((0.05, 0.07, 0.30), 1.0), "red": ((0.65, 0.08, 0.10), 1.0),
    "green": ((0.08, 0.40, 0.15), 1.0), "pencil": ((0.30, 0.30, 0.32), 0.8),
}
PAPERS = {"white": (0.96, 0.96, 0.95), "cream": (0.95, 0.92, 0.82),
          "grey": (0.80, 0.80, 0.80), "bluish": (0.88, 0.91, 0.96)}


def pen_digit(digit: np.ndarray, height: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 MNIST digit -> ink coverage 0..1 of a pen-drawn digit about `height` px tall."""
    from skimage.filters import gaussian
    from skimage.morphology import dilation, disk, skeletonize
    from skimage.transform import AffineTransform, resize, warp

    box = max(1, height * 28 // 20)  # MNIST's 20 px box -> `height` px
    shape = resize(digit.astype(np.float32) / 255, (box, box), order=3) > rng.uniform(0.3, 0.5)
    if rng.random() < 0.75:  # redraw the skeleton with a round pen
        pen_radius = max(1, int(round(height * rng.uniform(0.015, 0.08))))
        shape = dilation(skeletonize(shape), disk(pen_radius))
    # slant, rotation and stretch around the centre
    centre = np.array([box / 2, box / 2])
    transform = (AffineTransform(translation=-centre)
                 + AffineTransform(shear=rng.uniform(-0.35, 0.35), rotation=rng.uniform(-0.2, 0.2),
                                   scale=(rng.uniform(0.8, 1.2), rng.uniform(0.85, 1.15)))
                 + AffineTransform(translation=centre))
    warped = warp(shape.astype(np.float32), transform.inverse, order=1, mode="constant")
    return gaussian(warped, sigma=rng.uniform(0.4, 1.0))


def smooth_field(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Random smooth field in -1..1 whose features are about `scale` of the image size."""
    from skimage.transform import resize

    coarse = rng.uniform(-1, 1, (max(2, int(1 / scale)), max(2, int(1 / scale))))
    return resize(coarse, shape, order=3)


def photograph(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Place the ink on a larger sheet of paper and photograph it: RGB float 0..1."""
    from skimage.filters import gaussian

    h, w = coverage.shape
    height = int(h * rng.uniform(1.1, 2.5))
    width = int(w * rng.uniform(1.1, 2.5))
    sheet = np.zeros((height, width), np.float32)
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    sheet[top:top + h, left:left + w] = coverage

    ink_rgb, opacity = INKS[rng.choice(list(INKS))]
    paper_rgb = np.array(PAPERS[rng.choice(list(PAPERS))])
    paper = paper_rgb * (1 + 0.04 * smooth_field((height, width), 0.1, rng))[..., None]
    paper = paper + rng.normal(0, rng.uniform(0.0, 0.03), (height, width, 1))  # paper grain
    alpha = np.clip(sheet * rng.uniform(0.6, 1.0) * opacity, 0, 1)[..., None]
    image = paper * (1 - alpha) + np.array(ink_rgb) * alpha

    # uneven light: a gradient across the sheet and/or a vignette
    yy, xx = np.mgrid[0:height, 0:width]
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)
    light = 1 - rng.uniform(0, 0.45) * (gradient - gradient.min()) / max(np.ptp(gradient), 1e-6)
    radius = np.hypot(yy / height - 0.5, xx / width - 0.5)
    light *= 1 - rng.uniform(0, 0.5) * radius ** 2
    image = image * light[..., None]

    image = gaussian(image, sigma=rng.uniform(0.0, 1.5), channel_axis=-1)
    image = image + rng.normal(0, rng.uniform(0.0, 0.04), image.shape)
    return np.clip(image, 0, 1)


def save(image: np.ndarray, path_stem: Path, rng: np.random.Generator) -> Path:
    """Save as JPEG or PNG, RGB or grayscale, the way phones and scanners do."""
    import skimage.io
    from PIL import Image
    from skimage.color import rgb2gray

    if rng.random() < 0.35:
        image = rgb2gray(image)
    pixels = np.round(image * 255).astype(np.uint8)
    if rng.random() < 0.6:
        path = path_stem.with_suffix(".jpg")
        # PIL directly: skimage.io no longer passes a JPEG quality through to the encoder
        Image.fromarray(pixels).save(path, quality=int(rng.integers(40, 96)))
    else:
        path = path_stem.with_suffix(".png")
        skimage.io.imsave(path, pixels, check_contrast=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-dir", default="data",
                        help="folder with the MNIST test IDX files (default: data)")
    parser.add_argument("--out", default="benchmarks/out/handwriting",
                        help="output folder (default: benchmarks/out/handwriting)")
    parser.add_argument("--count", type=int, default=1000, help="number of images (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args()
    if args.count < 1:
        raise UserError("--count must be at least 1")

    images, labels = load_split(args.mnist_dir, "test")
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(images), size=min(args.count, len(images)), replace=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, index in enumerate(tqdm(chosen, desc="drawing", unit="img")):
        height = int(rng.choice([rng.integers(40, 120), rng.integers(120, 300)]))
        coverage = pen_digit(images[index], height, rng)
        path = save(photograph(coverage, rng), out / f"{n:05d}", rng)
        rows.append((path.name, int(labels[index])))
    with atomic_write(out / "labels.csv") as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([("file", "label"), *rows])
    print(f"wrote {len(rows)} images and labels.csv to {out}/")


if __name__ == "__main__":
    run_cli(main)
