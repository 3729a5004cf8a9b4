"""Read MNIST-style IDX files (gzip-compressed or raw) into numpy arrays, checking every field.

IDX layout (big-endian): two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, one 4-byte size per dimension, then the data. MNIST images are magic 0x00000803
(N x 28 x 28), labels 0x00000801 (N).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .cli import UserError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
NUM_CLASSES = 10

# The four file names shared by MNIST and Fashion-MNIST, per split.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IdxError(UserError):
    """An IDX file is damaged or is not what it claims to be."""


def find_idx_file(data_dir: str | Path, name: str) -> Path | None:
    """Return `data_dir/name.gz` or, failing that, the decompressed `data_dir/name`, if present."""
    for candidate in (Path(data_dir) / f"{name}.gz", Path(data_dir) / name):
        if candidate.is_file():
            return candidate
    return None


def read_content(path: str | Path) -> bytes:
    """Return the IDX bytes of `path`, decompressed if it is gzip, with a clear error if damaged."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise IdxError(f"{path}: cannot read ({err.strerror})") from None
    if not raw:
        raise IdxError(f"{path}: file is empty")
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise IdxError(f"{path}: corrupt or truncated gzip data ({err})") from None
    if path.suffix == ".gz":
        raise IdxError(f"{path}: not a gzip file (it does not start with the gzip signature)")
    return raw


def read_idx(path: str | Path, expected_magic: int, content: bytes | None = None) -> np.ndarray:
    """Read one IDX file of unsigned bytes and return it as a uint8 array of its declared shape.

    `content`, when given, is the file's already decompressed bytes (see read_content), so a
    caller that also checksums them reads and decompresses the file only once.
    """
    path = Path(path)
    data = read_content(path) if content is None else content
    if len(data) < 4:
        raise IdxError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise IdxError(f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{path}: header truncated ({len(data)} bytes, need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise IdxError(
            f"{path}: header declares shape {shape} ({expected} bytes) but the file holds "
            f"{len(data)} bytes ({'truncated' if len(data) < expected else 'trailing data'})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_images(path: str | Path, content: bytes | None = None) -> np.ndarray:
    """Images as uint8 [N, 28, 28]; 0 is background, 255 full ink."""
    images = read_idx(path, IMAGES_MAGIC, content)
    if images.shape[1:] != (28, 28):
        raise IdxError(f"{path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    return images


def read_labels(path: str | Path, num_classes: int = NUM_CLASSES,
                content: bytes | None = None) -> np.ndarray:
    """Labels as uint8 [N], each checked to lie in 0..num_classes-1."""
    labels = read_idx(path, LABELS_MAGIC, content)
    if labels.size and labels.max() >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise IdxError(f"{path}: label {labels[bad]} at index {bad} is out of range 0-{num_classes - 1}")
    return labels


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split ('train' or 'test') from data_dir: (images [N,28,28], labels [N]), both uint8."""
    images_name, labels_name = SPLIT_FILES[split]
    paths = []
    for name in (images_name, labels_name):
        path = find_idx_file(data_dir, name)
        if path is None:
            raise IdxError(f"{Path(data_dir) / name}.gz: file not found (run `python convert.py` to fetch it)")
        paths.append(path)
    images, labels = read_images(paths[0]), read_labels(paths[1])
    if len(images) != len(labels):
        raise IdxError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds {len(labels)} labels")
    return images, labels
