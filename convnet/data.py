"""Image lists -> one cached uint8 tensor per split; batches by indexing that tensor.

A list file holds one `<path relative to the data dir> <integer label>` per line (what
convert.py writes as data/train.txt and data/test.txt). Every image is decoded once with
scikit-image (colour -> gray, resized to --image-size) into a uint8 tensor [N, H, W] cached at
data/.cache/<list>-<key>.pt; the key covers the list's bytes, the image size and every listed
file's size and modification time, so any change rebuilds the cache. Where there are no lists
but the MNIST IDX files are present, the splits are read from those directly: same tensors.

Training then never decodes or touches Python per sample: TensorLoader slices a random
permutation of the tensor each epoch (one shard per process under torchrun).
"""
from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from .cli import UserError, atomic_write
from .idx import SPLIT_FILES, find_idx_file, load_split

LIST_FILES = {"train": "train.txt", "test": "test.txt"}
CLASSES_FILE = "classes.txt"
CACHE_DIR = ".cache"
CACHE_VERSION = 1  # bump when decoding changes, so old caches are rebuilt
DECODE_CHUNK = 256  # images per task sent to a decoding process


@dataclass
class ImageSet:
    """One split in memory: images uint8 [N, H, W] (0 = background), labels int64 [N]."""
    images: torch.Tensor
    labels: torch.Tensor
    source: str  # where it came from, for messages

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ListEntry:
    path: str
    label: int
    where: str  # "data/train.txt:12", for error messages
    signature: str  # size and modification time: any change to the file changes the cache key


def read_list(list_path: Path, data_dir: Path) -> list[ListEntry]:
    """Parse and check a list file; every problem is reported with its file and line number.

    Plain strings and one stat() per image: this runs at every start, over 70,000 lines for
    MNIST, so it must take a fraction of a second (pathlib objects took ~3 s here).
    """
    try:
        text = list_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{list_path}: cannot read the list ({err})") from None
    root = os.path.normpath(data_dir.absolute())
    inside = root.rstrip(os.sep) + os.sep
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{list_path}:{number}"
        fields = line.rsplit(maxsplit=1)  # the path may contain spaces, the label cannot
        if len(fields) != 2:
            raise UserError(f"{where}: expected '<image path> <label>', got {line.strip()!r}")
        name, label_text = fields
        try:
            label = int(label_text)
        except ValueError:
            raise UserError(f"{where}: label {label_text!r} is not an integer") from None
        if label < 0:
            raise UserError(f"{where}: label {label} is negative (labels are 0, 1, 2, ...)")
        path = os.path.normpath(os.path.join(root, name))
        if not path.startswith(inside):
            raise UserError(f"{where}: {name!r} points outside the data folder {data_dir}")
        try:
            info = os.stat(path)
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise UserError(f"{where}: image {path} not found")
        entries.append(ListEntry(path, label, where, f"{info.st_size} {info.st_mtime_ns}"))
    if not entries:
        raise UserError(f"{list_path}: the list is empty")
    return entries


def decode_image(path: str | Path, image_size: int | None) -> np.ndarray:
    """One image file -> uint8 gray [H, W], resized to image_size x image_size if given.

    8-bit gray images of the right size pass through untouched, so a PNG written from an IDX
    file decodes to exactly the IDX bytes.
    """
    from skimage import color, io, transform, util  # imported here: only decoding needs it

    image = io.imread(path)
    if image.ndim == 3:
        if image.shape[-1] == 4:
            image = color.rgba2rgb(image)
        if image.shape[-1] == 2:  # gray + alpha
            image = image[..., 0]
        else:
            image = color.rgb2gray(image)
    if image.ndim != 2:
        raise ValueError(f"unsupported image shape {image.shape}")
    if image_size is not None and image.shape != (image_size, image_size):
        image = transform.resize(util.img_as_float(image), (image_size, image_size),
                                 anti_aliasing=True)
    return image if image.dtype == np.uint8 else util.img_as_ubyte(image)


def _decode_chunk(paths: list[str], image_size: int | None) -> list[np.ndarray | str]:
    """Decode a chunk in a worker process; a failure comes back as its message, not a crash."""
    results: list[np.ndarray | str] = []
    for path in paths:
        try:
            results.append(decode_image(path, image_size))
        except Exception as err:  # any decoder error means "unreadable image" to the user
            results.append(f"{type(err).__name__}: {err}".splitlines()[0][:200])
    return results


def decode_images(entries: list[ListEntry], image_size: int | None, workers: int,
                  desc: str) -> np.ndarray:
    """Decode every listed image in parallel (progress bar) into one uint8 array [N, H, W]."""
    paths = [entry.path for entry in entries]
    chunks = [paths[i:i + DECODE_CHUNK] for i in range(0, len(paths), DECODE_CHUNK)]
    decoded: list[np.ndarray | str] = []
    with tqdm(total=len(paths), desc=desc, unit="img", leave=False) as bar:
        if workers <= 1 or len(chunks) == 1:
            results = (_decode_chunk(chunk, image_size) for chunk in chunks)
            for result in results:
                decoded += result
                bar.update(len(result))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(_decode_chunk, chunks, [image_size] * len(chunks)):
                    decoded += result
                    bar.update(len(result))
    shapes: dict[tuple[int, ...], ListEntry] = {}
    for entry, image in zip(entries, decoded):
        if isinstance(image, str):
            raise UserError(f"{entry.where}: cannot read image {entry.path} ({image})")
        shapes.setdefault(image.shape, entry)
    if len(shapes) > 1:
        (shape_a, first), (shape_b, other) = list(shapes.items())[:2]
        raise UserError(f"{other.where}: image is {shape_b[0]}x{shape_b[1]} but {first.where} is "
                        f"{shape_a[0]}x{shape_a[1]}; pass --image-size N to resize all to NxN")
    (height, width), entry = next(iter(shapes.items()))
    if height != width:
        raise UserError(f"{entry.where}: images are {height}x{width}, not square; "
                        f"pass --image-size N to resize them to NxN")
    return np.stack(decoded)


def _cache_key(list_path: Path, entries: list[ListEntry], image_size: int | None) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION} size={image_size}\n".encode())
    digest.update(list_path.read_bytes())
    digest.update("\n".join(entry.signature for entry in entries).encode())
    return digest.hexdigest()[:16]


def load_list(list_path: Path, data_dir: Path, image_size: int | None, workers: int) -> ImageSet:
    """A list file -> ImageSet, decoding only when the cache is missing or stale."""
    entries = read_list(list_path, data_dir)
    cache = data_dir / CACHE_DIR / f"{list_path.stem}-{_cache_key(list_path, entries, image_size)}.pt"
    labels = torch.tensor([entry.label for entry in entries], dtype=torch.int64)
    if cache.is_file():
        try:
            images = torch.load(cache, weights_only=True)
            if isinstance(images, torch.Tensor) and len(images) == len(labels):
                return ImageSet(images, labels, str(list_path))
        except Exception:  # a damaged cache is only a cache: decode again below
            pass
    images = torch.from_numpy(decode_images(entries, image_size, workers, f"decoding {list_path.name}"))
    try:
        with atomic_write(cache) as tmp:
            torch.save(images, tmp)
    except OSError:  # a read-only data folder still trains, it just decodes every time
        pass
    return ImageSet(images, labels, str(list_path))


def load_idx_split(data_dir: Path, split: str, image_size: int | None) -> ImageSet:
    """One split straight from the MNIST IDX files, resized like list images when asked."""
    images, labels = load_split(data_dir, split)
    if image_size is not None and image_size != images.shape[1]:
        from skimage import transform, util
        images = np.stack([util.img_as_ubyte(transform.resize(util.img_as_float(image),
                                                              (image_size, image_size),
                                                              anti_aliasing=True))
                           for image in tqdm(images, desc=f"resizing {split}", leave=False)])
    return ImageSet(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)),
                    f"{data_dir}/{SPLIT_FILES[split][0]}")


def load_data(data_dir: str | Path, image_size: int | None = None,
              workers: int | None = None) -> tuple[ImageSet, ImageSet, list[str]]:
    """(train, test, class_names) from data_dir's lists, or from its IDX files if it has no lists."""
    data_dir = Path(data_dir)
    workers = workers or os.cpu_count() or 1
    lists = {split: data_dir / name for split, name in LIST_FILES.items()}
    if lists["train"].is_file():
        if not lists["test"].is_file():
            raise UserError(f"{lists['test']}: not found (a test list is needed beside "
                            f"{lists['train'].name} to measure accuracy)")
        train, test = (load_list(lists[split], data_dir, image_size, workers) for split in ("train", "test"))
    elif find_idx_file(data_dir, SPLIT_FILES["train"][0]) is not None:
        train, test = (load_idx_split(data_dir, split, image_size) for split in ("train", "test"))
    else:
        raise UserError(f"{data_dir}: no train.txt and no MNIST IDX files here "
                        f"(run `python convert.py` first, or pass --data-dir)")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise UserError(f"{test.source}: images are {tuple(test.images.shape[1:])}, but the training "
                        f"images are {tuple(train.images.shape[1:])}; pass --image-size N")
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    return train, test, read_class_names(data_dir, num_classes)


def read_class_names(data_dir: Path, num_classes: int) -> list[str]:
    """Names from data_dir/classes.txt (one per line, in label order); else "0", "1", ..."""
    path = data_dir / CLASSES_FILE
    if not path.is_file():
        return [str(label) for label in range(num_classes)]
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) < num_classes:
        raise UserError(f"{path}: names {len(names)} classes, but the lists use labels up to "
                        f"{num_classes - 1}")
    return names


def split_validation(train: ImageSet, val_size: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Hold out val_size random training images (the same ones for a given seed)."""
    if not 0 < val_size < len(train):
        raise UserError(f"--val-size {val_size}: must be between 1 and {len(train) - 1}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    keep, held = order[val_size:], order[:val_size]
    return (ImageSet(train.images[keep], train.labels[keep], train.source),
            ImageSet(train.images[held], train.labels[held], f"{train.source} (held out)"))


class TensorLoader:
    """Batches of (uint8 images, labels) by indexing tensors that already sit on the device.

    With shuffle, each epoch draws a new permutation from (seed, epoch), identical in every
    process, and process `rank` of `world_size` takes every world_size-th index of it, trimmed
    so all processes run the same number of steps. Without shuffle (evaluation) the shard is
    every world_size-th image in order and nothing is dropped.
    """

    def __init__(self, data: ImageSet, batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu") -> None:
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(self.rank, n, self.world_size)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        per_rank = n // self.world_size
        return order[self.rank::self.world_size][:per_rank]

    def __len__(self) -> int:
        n = len(self._indices()) if not self.shuffle else len(self.labels) // self.world_size
        return -(-n // self.batch_size)

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the epoch's batches, skipping the first `start` (to resume mid-epoch)."""
        indices = self._indices().to(self.images.device)
        for begin in range(start * self.batch_size, len(indices), self.batch_size):
            batch = indices[begin:begin + self.batch_size]
            yield self.images[batch], self.labels[batch]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()
