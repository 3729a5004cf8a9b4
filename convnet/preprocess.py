"""Photos and scans of a handwritten digit -> the 28x28 MNIST look the model was trained on.

MNIST digits are white ink on black, scaled so the ink's longer side is 20 px (aspect kept,
anti-aliased) and placed in 28x28 so that the ink's centre of mass is the centre. A photo of
dark ink on white paper resized naively to 28x28 looks nothing like that, so `to_mnist_style`
rebuilds that look step by step, with scikit-image:

  1. grayscale (alpha composited on white paper; palette, 16-bit and colour images too)
  2. shrink very large photos to a working size (anti-aliased), smooth away sensor noise
  3. flatten uneven light: fit a smooth surface to the paper (most pixels) and subtract it
  4. polarity: ink is the one-sided tail left after that; dark ink on light paper is inverted
  5. find the ink with Otsu's threshold (above the paper's noise level), drop specks, crop to the ink; soft edges are kept
     by scaling the flattened intensities between paper and ink level, not by binarising
  6. thin pen strokes are thickened to MNIST's stroke width (relative to the digit's size)
  7. longer side -> 20 px, anti-aliased; paste into 28x28 at the centre of mass

An image that is already in the model's format (image_size x image_size, one channel, dark
background; e.g. data/test/00000.png written by convert.py) is passed through untouched, so
labelling a converted test folder gives exactly the accuracy main.py reports.

`load_and_prepare(path)` is what detect.py's worker processes call per file; it raises
ImageError with a one-line message for anything that is not a readable, sane image.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# A decompression bomb is a small file that decodes to a huge image. The pixel count comes from
# the header, before decoding; 50 megapixels is above any phone camera or A4 scan at 600 dpi.
MAX_PIXELS = 50_000_000
# Photos are analysed at this size (longer side); a digit filling a tenth of the frame still
# spans ~60 px, three times the 20 px it ends up as.
WORKING_SIZE = 600
MNIST_BOX = 20          # the ink's longer side in MNIST's 28x28 images
# MNIST strokes are ~2.5 px wide inside the 20 px box (median over the test set, measured with
# area / skeleton length); ink thinner than this after scaling is thickened towards it.
TARGET_STROKE = 2.4
MIN_CONTRAST = 0.04     # ink must differ from the paper by this much (0..1 scale)...
NOISE_MULTIPLE = 8      # ...and by this many times the paper's noise/texture level


class ImageError(Exception):
    """One image cannot be used (missing, not an image, damaged, too large). One line, names no path."""


@dataclass
class Prepared:
    """What the model sees for one file. `pixels` is None when no ink was found (blank page)."""
    pixels: np.ndarray | None      # uint8 [size, size], 0 = background
    passthrough: bool              # True when the file was already in the model's format


def read_gray(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to a 2-D array: uint8/uint16 as stored when single-channel, else
    float 0..1 (colour -> luminance, alpha composited on white, first frame of a GIF)."""
    from PIL import Image, UnidentifiedImageError
    import skimage.io
    from skimage.color import rgb2gray

    path = Path(path)
    if path.is_dir():
        raise ImageError("is a directory")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImageError(f"cannot read ({err.strerror.lower()})") from None
    if size == 0:
        raise ImageError("file is empty")
    # Check the pixel count from the header alone (Image.open does not decode the pixels).
    try:
        with Image.open(path) as header:
            width, height = header.size
    except UnidentifiedImageError:
        raise ImageError("not an image (unknown or unsupported format)") from None
    except Image.DecompressionBombError:  # PIL's own, higher limit, also read from the header
        raise ImageError(f"image too large to decode safely (over {max_pixels:,} pixels)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"not a readable image ({_first_line(err)})") from None
    if width * height > max_pixels:
        raise ImageError(f"image too large to decode safely: {width}x{height} = "
                         f"{width * height:,} pixels, over the limit of {max_pixels:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. PIL's "truncated file" chatter; errors still raise
            image = skimage.io.imread(str(path))
    except Exception as err:  # decoders raise many types (OSError, ValueError, SyntaxError, ...)
        raise ImageError(f"damaged or truncated image ({_first_line(err)})") from None
    image = np.asarray(image)
    if image.ndim == 4 or (image.ndim == 3 and image.shape[-1] not in (2, 3, 4)):
        image = image[0]  # animated GIF and multi-page files: the first frame
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        return image
    if image.ndim != 3 or min(image.shape[:2]) < 1:
        raise ImageError(f"unsupported image layout {image.shape}")
    image = _to_unit_float(image)
    if image.shape[-1] in (2, 4):  # gray+alpha / RGBA: composite on white paper
        alpha = image[..., -1:]
        image = image[..., :-1] * alpha + (1.0 - alpha)
    return image[..., 0] if image.shape[-1] == 1 else rgb2gray(image)


def is_model_format(gray: np.ndarray, image_size: int) -> bool:
    """Already an MNIST-style image: the model's size, one channel, dark background."""
    if gray.shape != (image_size, image_size) or gray.dtype != np.uint8:
        return False
    return _border(gray).mean() < 64


def to_mnist_style(gray: np.ndarray, image_size: int = 28) -> np.ndarray | None:
    """Any grayscale photo or scan of one digit -> uint8 [image_size, image_size] in the MNIST
    look (white ink on black, centred by mass); None when the image holds no ink."""
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label
    from skimage.morphology import dilation, disk, skeletonize
    from skimage.transform import rescale, resize

    image = _to_unit_float(gray)
    longer = max(image.shape)
    if longer > WORKING_SIZE:
        image = rescale(image, WORKING_SIZE / longer, anti_aliasing=True)
    # Smooth sensor noise and paper grain a little, relative to the picture's size.
    image = gaussian(image, sigma=max(0.5, max(image.shape) / 300))

    ink, noise = _ink_above_paper(image)
    # Ink must stand out from the paper's own texture and noise, and by a visible amount.
    if ink.max() < max(MIN_CONTRAST, NOISE_MULTIPLE * noise):
        return None
    threshold = max(float(threshold_otsu(ink)), NOISE_MULTIPLE / 2 * noise)
    mask = _drop_specks(label(ink > threshold))
    if mask is None:
        return None

    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # Scale between the paper level (0 after flattening) and the ink level (a high percentile,
    # so that one bright speck does not dim the digit); keep soft edges near the ink.
    ink_level = np.percentile(ink[mask], 90)
    soft = np.clip(ink / max(ink_level, 1e-6), 0.0, 1.0)
    near_ink = dilation(mask, disk(2))
    soft = np.where(near_ink, soft, 0.0)[top:bottom, left:right]
    crop_mask = mask[top:bottom, left:right]

    scale = MNIST_BOX / max(soft.shape)
    stroke = _stroke_width(crop_mask, skeletonize) * scale
    if stroke < TARGET_STROKE * 0.8:
        radius = int(round((TARGET_STROKE - stroke) / 2 / scale))
        if radius >= 1:
            soft = dilation(np.pad(soft, radius), disk(radius))

    scale = MNIST_BOX / max(soft.shape)
    new_shape = tuple(max(1, int(round(side * scale))) for side in soft.shape)
    digit = np.clip(resize(soft, new_shape, anti_aliasing=True), 0.0, 1.0)
    return _place_by_centre_of_mass(digit, image_size)


def load_and_prepare(path: str | Path, image_size: int = 28,
                     max_pixels: int = MAX_PIXELS) -> Prepared:
    """Read one file and return what the model should see (see the module docstring)."""
    gray = read_gray(path, max_pixels)
    if gray.dtype == np.uint16:
        gray = (gray // 257).astype(np.uint8)
    if is_model_format(gray, image_size):
        return Prepared(pixels=gray if gray.max() > 0 else None, passthrough=True)
    return Prepared(pixels=to_mnist_style(gray, image_size), passthrough=False)


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype.kind in "ui":
        return image.astype(np.float32) / np.iinfo(image.dtype).max
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def _border(image: np.ndarray) -> np.ndarray:
    """The pixels of the outer frame (a twentieth of each side, at least one pixel)."""
    band_rows = max(1, image.shape[0] // 20)
    band_cols = max(1, image.shape[1] // 20)
    return np.concatenate([image[:band_rows].ravel(), image[-band_rows:].ravel(),
                           image[:, :band_cols].ravel(), image[:, -band_cols:].ravel()])


def _ink_above_paper(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Separate ink from paper, whatever the polarity and the lighting.

    A quadratic surface fitted robustly to the paper (first to the frame of the picture, then
    to every pixel within 3 sigma of the last fit) follows the paper and its uneven light, not
    the ink. Ink is the heavy one-sided tail of the residuals: darker than the paper (pen on
    paper, inverted here) or brighter (chalk, MNIST). Returns the ink strength
    (>= 0, paper ~0) and the paper's noise level (robust sigma of the residuals).
    """
    height, width = image.shape
    step = max(1, max(height, width) // 100)  # a ~100x100 grid is plenty for a smooth surface
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    design = _quadratic_terms(ys.ravel() / height - 0.5, xs.ravel() / width - 0.5)
    values = image[::step, ::step].ravel()
    # Start from the frame around the picture: paper, even where a big, bold digit covers a
    # third of it, and all around the digit, so the first surface interpolates the light.
    rows, cols = ys.ravel(), xs.ravel()
    band_rows, band_cols = max(1, height // 20), max(1, width // 20)
    paper = ((rows < band_rows) | (rows >= height - band_rows)
             | (cols < band_cols) | (cols >= width - band_cols))
    for _ in range(4):
        coefs, *_ = np.linalg.lstsq(design[paper], values[paper], rcond=None)
        residual = values - design @ coefs
        noise = 1.4826 * np.median(np.abs(residual[paper] - np.median(residual[paper])))
        paper = np.abs(residual) <= 3 * max(noise, 1e-3)
        if paper.sum() < design.shape[1] * 4:
            break
    yy, xx = np.mgrid[0:height, 0:width]
    residual = image - (_quadratic_terms(yy / height - 0.5, xx / width - 0.5) @ coefs)
    margin = 3 * max(noise, 1e-3)
    darker = np.clip(-residual - margin, 0, None).sum()
    brighter = np.clip(residual - margin, 0, None).sum()
    ink = -residual if darker > brighter else residual
    return np.clip(ink, 0.0, None), float(noise)


def _quadratic_terms(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def _drop_specks(labels: np.ndarray) -> np.ndarray | None:
    """Keep the ink components that are not specks: at least 4% of the largest one's area.
    None when even the largest is too small to be a digit (noise on a blank page)."""
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    if areas.max() == 0:
        return None
    largest = areas.max()
    if largest < max(12, 1e-4 * labels.size):
        return None
    keep = areas >= 0.04 * largest
    keep[0] = False
    return keep[labels]


def _stroke_width(mask: np.ndarray, skeletonize) -> float:
    """Mean stroke width in pixels: ink area divided by the length of its skeleton."""
    length = skeletonize(mask).sum()
    return float(mask.sum()) / max(int(length), 1)


def _place_by_centre_of_mass(digit: np.ndarray, image_size: int) -> np.ndarray:
    """Paste `digit` (floats 0..1, at most MNIST_BOX per side) into image_size x image_size so
    that its centre of mass lands on the centre, clamped so that no ink is cut off."""
    canvas = np.zeros((image_size, image_size), dtype=np.float64)
    height, width = digit.shape
    total = digit.sum()
    rows = np.arange(height)
    cols = np.arange(width)
    centre_row = (digit.sum(axis=1) @ rows) / total if total > 0 else (height - 1) / 2
    centre_col = (digit.sum(axis=0) @ cols) / total if total > 0 else (width - 1) / 2
    top = int(round((image_size - 1) / 2 - centre_row))
    left = int(round((image_size - 1) / 2 - centre_col))
    top = min(max(top, 0), image_size - height)
    left = min(max(left, 0), image_size - width)
    canvas[top:top + height, left:left + width] = digit
    return np.round(canvas * 255).astype(np.uint8)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:160]
