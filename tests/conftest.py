"""Shared test helpers: small IDX files made on the spot, and the real data sets when present.

The end-to-end tests read the real files from the folders named by the environment variables
CONVNET_MNIST_DIR and CONVNET_FASHION_MNIST_DIR (`.ci/run` sets them to ../shared/data/...),
and are skipped, with the reason shown, where those are absent.
"""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0803 for 3-D, 0x0801 for 1-D by default)."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_mnist_like(data_dir: Path, n_train: int = 40, n_test: int = 20, seed: int = 0,
                     compress: bool = True) -> dict[str, np.ndarray]:
    """Write the four IDX files with random images and labels; return the arrays by file name."""
    rng = np.random.default_rng(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        raw = idx_bytes(array)
        if compress:
            (data_dir / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (data_dir / name).write_bytes(raw)
    return arrays


def run_script(script: str, *args: str, cwd: Path | None = None, timeout: float = 600,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one of the top-level scripts as a user would, capturing its output."""
    full_env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def _real_dir(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"real data not configured: set {variable} (as .ci/run does)")
    path = Path(value).resolve()  # tests link to these files from temporary folders
    if not all((path / f"{name}.gz").is_file() for name in IDX_NAMES):
        pytest.skip(f"real data not found: {variable}={value} lacks the four IDX .gz files")
    return path


@pytest.fixture
def real_mnist_dir() -> Path:
    return _real_dir("CONVNET_MNIST_DIR")


@pytest.fixture
def real_fashion_mnist_dir() -> Path:
    return _real_dir("CONVNET_FASHION_MNIST_DIR")


def write_learnable_idx(data_dir: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> None:
    """IDX files a tiny CNN learns in seconds: class k is a bright block at the k-th of ten
    places (jittered by up to 2 pixels) on a noisy background, so training runs can be
    checked for accuracy, not only for finishing."""
    rng = np.random.default_rng(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    names = iter(IDX_NAMES)
    for count in (n_train, n_test):
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        images = rng.integers(0, 60, (count, 28, 28), dtype=np.uint8)
        for image, label in zip(images, labels):
            row, column = 4 + 12 * (label // 5), 2 + 5 * (label % 5)
            row, column = row + rng.integers(-2, 3), max(0, column + rng.integers(-1, 2))
            image[row:row + 6, column:column + 4] = 255
        (data_dir / f"{next(names)}.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (data_dir / f"{next(names)}.gz").write_bytes(gzip.compress(idx_bytes(labels)))
