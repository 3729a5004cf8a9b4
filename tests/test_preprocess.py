"""Preprocessing: photos become MNIST-looking 28x28 images, model-format images pass untouched,
bad files give one-line reasons."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.io
from PIL import Image
from skimage.transform import resize

from convnet.preprocess import ImageError, load_and_prepare, read_gray, to_mnist_style


def mnist_like_digit() -> np.ndarray:
    """A '7'-like MNIST-style digit: white strokes on black, 20 px box, centred."""
    image = np.zeros((28, 28), np.float64)
    image[5:8, 6:22] = 1.0                                   # the bar
    for row in range(8, 24):                                 # the diagonal
        col = int(21 - (row - 8) * 0.6)
        image[row, col - 1:col + 2] = 1.0
    return np.round(image * 255).astype(np.uint8)


def photo_of(digit: np.ndarray, scale: int = 10, canvas: tuple[int, int] = (600, 500),
             at: tuple[int, int] = (60, 190), ink=(20, 40, 140), seed: int = 0) -> np.ndarray:
    """Dark blue ink on light paper, off-centre, with a lighting gradient and noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    big = resize(digit / 255.0, (digit.shape[0] * scale, digit.shape[1] * scale), order=1)
    coverage = np.zeros(canvas)
    coverage[at[0]:at[0] + big.shape[0], at[1]:at[1] + big.shape[1]] = big
    paper = np.array([0.95, 0.93, 0.88]) * np.linspace(1.0, 0.7, canvas[1])[None, :, None]
    photo = paper * (1 - coverage[..., None]) + np.array(ink) / 255 * coverage[..., None]
    photo += rng.normal(0, 0.02, photo.shape)
    return np.round(np.clip(photo, 0, 1) * 255).astype(np.uint8)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_model_format_image_passes_unchanged(tmp_path):
    digit = mnist_like_digit()
    digit[10, 10] = 37  # odd grey levels must survive bit for bit
    skimage.io.imsave(tmp_path / "00000.png", digit, check_contrast=False)
    prepared = load_and_prepare(tmp_path / "00000.png")
    assert prepared.passthrough
    np.testing.assert_array_equal(prepared.pixels, digit)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_photo_of_dark_ink_becomes_mnist_style(tmp_path, suffix):
    digit = mnist_like_digit()
    path = tmp_path / f"photo{suffix}"
    skimage.io.imsave(path, photo_of(digit), check_contrast=False)
    prepared = load_and_prepare(path)
    seen = prepared.pixels
    assert not prepared.passthrough and seen.shape == (28, 28) and seen.dtype == np.uint8
    rows, cols = np.nonzero(seen > 30)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 in (19, 20, 21)      # longer side ~20 px
    mass = seen.astype(float) / seen.sum()
    centre = (mass.sum(1) @ np.arange(28), mass.sum(0) @ np.arange(28))
    assert np.allclose(centre, 13.5, atol=1.0)                    # centred by mass
    assert seen.max() >= 250 and np.median(seen) == 0            # white ink on black
    # and it is the same digit as a clean, white-on-black scan of it, despite colour, light, noise
    clean_scan = np.round(resize(digit / 255.0, (280, 280), order=1) * 255).astype(np.uint8)
    assert correlation(seen, to_mnist_style(clean_scan)) > 0.95


def test_light_ink_on_dark_and_dark_on_light_give_the_same_digit(tmp_path):
    photo = photo_of(mnist_like_digit(), ink=(0, 0, 0))
    gray = photo.mean(axis=2).astype(np.uint8)
    dark_on_light = to_mnist_style(gray)
    light_on_dark = to_mnist_style(255 - gray)
    assert correlation(dark_on_light, light_on_dark) > 0.9


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "1", "GIF", "BMP", "TIFF"])
def test_every_common_format_and_mode_is_read(tmp_path, mode):
    gray = photo_of(mnist_like_digit(), ink=(0, 0, 0)).mean(axis=2).astype(np.uint8)
    reference = to_mnist_style(gray)
    image = Image.fromarray(gray)
    path = tmp_path / "digit.png"
    if mode == "RGBA":  # ink opaque, paper fully transparent: composited on white
        rgba = np.zeros(gray.shape + (4,), np.uint8)
        rgba[..., 3] = 255 - gray
        image = Image.fromarray(rgba)
    elif mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)
    elif mode in ("LA", "P", "1"):
        image = image.convert(mode)
    else:
        path = tmp_path / f"digit.{mode.lower()}"
    image.save(path)
    seen = load_and_prepare(path).pixels
    assert seen is not None and seen.shape == (28, 28)
    assert correlation(seen, reference) > 0.8


def test_blank_pages_have_no_digit(tmp_path):
    rng = np.random.default_rng(0)
    paper = np.clip(0.9 + rng.normal(0, 0.03, (400, 300)) + np.linspace(0, 0.08, 300), 0, 1)
    skimage.io.imsave(tmp_path / "blank.jpg", np.round(paper * 255).astype(np.uint8),
                      check_contrast=False)
    skimage.io.imsave(tmp_path / "black.png", np.zeros((28, 28), np.uint8), check_contrast=False)
    assert load_and_prepare(tmp_path / "blank.jpg").pixels is None
    assert load_and_prepare(tmp_path / "black.png").pixels is None


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with almost no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", "file is empty"),
    ("notes.png", b"this is text, not pixels", "not an image"),
    ("bomb.png", png_declaring(10_000, 6_000), "too large to decode safely"),
    ("huge.png", png_declaring(60_000, 60_000), "too large to decode safely"),
])
def test_bad_files_are_refused_with_a_reason(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_gray(path)


def test_truncated_image_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    full = tmp_path / "full.png"
    skimage.io.imsave(full, rng.integers(0, 256, (200, 200), dtype=np.uint8), check_contrast=False)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:5000])
    with pytest.raises(ImageError, match="truncated"):
        read_gray(cut)


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_gray(tmp_path / "nowhere.png")
    with pytest.raises(ImageError, match="directory"):
        read_gray(tmp_path)
