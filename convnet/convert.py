"""IDX files -> one PNG per image plus image lists: fast, idempotent and safe to kill at any moment.

What convert() leaves in the data folder (beside the four IDX files):
  train/00000.png ...  test/00000.png ...   28x28 8-bit grayscale, pixels exactly the IDX bytes
  train.txt, test.txt   one `train/00000.png 5` line per image (path relative to the folder,
                        label), in IDX order
  classes.txt           the class names, one per line, in label order (digits 0-9 for MNIST)
  .convert.json         the stamp: data set, limit, counts and the checksums of the inputs

Safety: a conversion first deletes the stamp and the lists, writes each split's PNGs into a
fresh hidden folder (`.train.partial`) and swaps it in only once every image is written, then
writes the lists and finally the stamp, each atomically. Killed at any moment, it leaves no
list naming a missing or half-written image, and the next run (no matching stamp) redoes the
work. A run whose stamp matches the inputs and whose images are all present does nothing.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from . import download as dl
from .cli import UserError, atomic_write
from .idx import SPLIT_FILES, IdxError, find_idx_file, read_content, read_images, read_labels

STAMP_NAME = ".convert.json"
STAMP_FORMAT = 1  # bump when the output layout changes, so old outputs get redone
CLASSES_NAME = "classes.txt"
IMAGES_PER_TASK = 1000  # big enough to amortise inter-process traffic, small for a smooth bar
PNG_ZLIB_LEVEL = 1  # a 28x28 PNG fits one disk block at any level; 1 is the fastest


# ---------------------------------------------------------------------------------------------
# PNG encoding

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8 [H, W] array as an 8-bit grayscale PNG (lossless: it reads back exactly).

    Written out here, rather than through skimage.io.imsave or PIL, for speed: on the 2-core
    target machine skimage (via imageio) costs ~600 us per 28x28 image and PIL ~140 us, this
    ~30-50 us; with 70,000 images and ~100 us of file-system work each, only this meets the
    10 s budget. The tests read the PNGs back with scikit-image to prove them standard.
    """
    height, width = image.shape
    rows = np.pad(image, ((0, 0), (1, 0)))  # every scanline starts with filter type 0 (none)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_ZLIB_LEVEL))
            + _png_chunk(b"IEND", b""))


def png_name(index: int) -> str:
    """File name of image `index` in its split folder: 5-digit zero-padded, so `ls` sorts it."""
    return f"{index:05d}.png"


def _write_pngs(task: tuple[str, int, np.ndarray]) -> int:
    """Worker: write one block of consecutive images into `folder`; return how many."""
    folder, first_index, images = task
    for offset, image in enumerate(images):
        with open(os.path.join(folder, png_name(first_index + offset)), "wb") as f:
            f.write(encode_png(image))
    return len(images)


def _ignore_sigint() -> None:
    # Ctrl-C goes to the whole process group; only the parent should react (and stop the pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------------
# Inputs: find or download, validate, checksum

def _gather_inputs(data_dir: Path, dataset: str, allow_download: bool,
                   mirrors: Iterable[str]) -> dict[str, tuple[Path, bool]]:
    """Path of each of the four IDX files and whether this run downloaded it."""
    names = [name for pair in SPLIT_FILES.values() for name in pair]
    found = {name: find_idx_file(data_dir, name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    title = dl.DATASETS[dataset].title
    if missing and not allow_download:
        raise UserError(f"{data_dir} lacks {', '.join(f'{name}.gz' for name in missing)}; "
                        f"put the {title} files there by hand or run without --no-download")
    inputs = {name: (path, False) for name, path in found.items() if path is not None}
    if missing:
        data_dir.mkdir(parents=True, exist_ok=True)
        mirror_list = list(dict.fromkeys([*mirrors, *dl.builtin_mirrors(dataset)]))
        for name in missing:
            expected = dl.DATASETS[dataset].content_sha256[name]
            inputs[name] = (dl.download(name, data_dir, mirror_list, expected), True)
    return inputs


def _unpublished_warning(path: Path, name: str, content: bytes, dataset: str) -> str | None:
    """A warning when a file the user placed differs from the published one (it is still used)."""
    found = dl.identify(name, content)
    if found == dataset:
        return None
    hint = f"it is the {dl.DATASETS[found].title} file; pass --dataset {found}" if found else "using it anyway"
    return f"warning: {path} differs from the published {dl.DATASETS[dataset].title} checksum; {hint}"


def load_inputs(data_dir: Path, dataset: str, allow_download: bool = True,
                mirrors: Iterable[str] = ()) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                                                      dict[str, str]]:
    """Validated (images, labels) per split, and the content checksum of each input file."""
    inputs = _gather_inputs(data_dir, dataset, allow_download, mirrors)
    num_classes = len(dl.DATASETS[dataset].classes)
    splits, checksums, warnings = {}, {}, []
    for split, (images_name, labels_name) in SPLIT_FILES.items():
        contents = {}
        for name in (images_name, labels_name):
            path, downloaded = inputs[name]
            contents[name] = read_content(path)
            checksums[name] = dl.content_sha256(contents[name])
            if not downloaded:
                warnings.append(_unpublished_warning(path, name, contents[name], dataset))
        images_path, labels_path = inputs[images_name][0], inputs[labels_name][0]
        images = read_images(images_path, content=contents[images_name])
        labels = read_labels(labels_path, num_classes, content=contents[labels_name])
        if len(images) != len(labels):
            raise IdxError(f"{images_path} holds {len(images)} images but {labels_path} "
                           f"holds {len(labels)} labels")
        splits[split] = (images, labels)
    # Only once every file passed validation, so that an error stays the one line on stderr.
    for warning in filter(None, warnings):
        tqdm.write(warning, file=sys.stderr)
    return splits, checksums


# ---------------------------------------------------------------------------------------------
# Outputs

def _is_up_to_date(data_dir: Path, stamp: dict) -> bool:
    """True when the last completed conversion had these exact inputs and its files are all there."""
    try:
        if json.loads((data_dir / STAMP_NAME).read_text()) != stamp:
            return False
        for split, count in stamp["counts"].items():
            if not (data_dir / f"{split}.txt").is_file():
                return False
            present = set(os.listdir(data_dir / split))
            if any(png_name(i) not in present for i in range(count)):
                return False
        return (data_dir / CLASSES_NAME).is_file()
    except (OSError, ValueError):  # no stamp yet, unreadable stamp, missing folder
        return False


def _remove_leftovers(data_dir: Path) -> None:
    """Delete what a killed run may have left: half-filled folders and atomic-write temp files."""
    for split in SPLIT_FILES:
        for leftover in (f".{split}.partial", f".{split}.old"):
            shutil.rmtree(data_dir / leftover, ignore_errors=True)
    for tmp in data_dir.glob(".*.tmp"):  # cli.atomic_write's temp names: .<target>.<random>.tmp
        tmp.unlink(missing_ok=True)


def _swap_in(new_folder: Path, target: Path) -> None:
    """Put a completely written folder at `target`, discarding the previous one."""
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(new_folder, target)
    shutil.rmtree(old, ignore_errors=True)


def _write_split(pool_map, data_dir: Path, split: str, images: np.ndarray) -> None:
    partial = data_dir / f".{split}.partial"
    partial.mkdir()
    tasks = [(str(partial), start, images[start:start + IMAGES_PER_TASK])
             for start in range(0, len(images), IMAGES_PER_TASK)]
    with tqdm(total=len(images), desc=f"{split:5s}", unit="img", unit_scale=True) as bar:
        for written in pool_map(_write_pngs, tasks):
            bar.update(written)
    _swap_in(partial, data_dir / split)


def _write_list(path: Path, split: str, labels: np.ndarray) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text("".join(f"{split}/{png_name(i)} {label}\n" for i, label in enumerate(labels)))


def _write_stamp(path: Path, stamp: dict) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(stamp, indent=2) + "\n")


@contextlib.contextmanager
def _parallel_map(workers: int) -> Iterator:
    """imap_unordered over a process pool, or the plain built-in map for a single worker."""
    if workers <= 1:
        yield map
        return
    with multiprocessing.Pool(workers, initializer=_ignore_sigint) as pool:
        yield pool.imap_unordered


def convert(data_dir: str | Path = "data", dataset: str = "mnist", limit: int | None = None,
            workers: int | None = None, force: bool = False, allow_download: bool = True,
            mirrors: Iterable[str] = ()) -> str:
    """Convert the data set's IDX files in data_dir to PNGs and lists; return a summary line.

    limit keeps the first `limit` images of each split; workers defaults to the CPU count.
    Missing IDX files are downloaded (mirrors first) unless allow_download is False.
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    title = dl.DATASETS[dataset].title
    splits, checksums = load_inputs(data_dir, dataset, allow_download, mirrors)
    splits = {split: (images[:limit], labels[:limit]) for split, (images, labels) in splits.items()}
    counts = {split: len(labels) for split, (_, labels) in splits.items()}
    stamp = {"format": STAMP_FORMAT, "dataset": dataset, "limit": limit,
             "inputs": checksums, "counts": counts}
    described = f"{counts['train']:,} train + {counts['test']:,} test {title} images"
    if not force and _is_up_to_date(data_dir, stamp):
        return f"{data_dir}/ is up to date with {described}: nothing to do (--force converts again)"

    # From here until the stamp is written the folder must not look complete.
    (data_dir / STAMP_NAME).unlink(missing_ok=True)
    for split in splits:
        (data_dir / f"{split}.txt").unlink(missing_ok=True)
    _remove_leftovers(data_dir)
    try:
        with _parallel_map(workers or os.cpu_count() or 1) as pool_map:
            for split, (images, _) in splits.items():
                _write_split(pool_map, data_dir, split, images)
        for split, (_, labels) in splits.items():
            _write_list(data_dir / f"{split}.txt", split, labels)
        with atomic_write(data_dir / CLASSES_NAME) as tmp:
            tmp.write_text("".join(f"{name}\n" for name in dl.DATASETS[dataset].classes))
        _write_stamp(data_dir / STAMP_NAME, stamp)
    except OSError as err:  # disk full, read-only folder, ...
        raise UserError(f"cannot write into {data_dir}: {err.strerror or err}") from None
    return f"converted {described} in {time.perf_counter() - started:.1f} s -> {data_dir}/"
