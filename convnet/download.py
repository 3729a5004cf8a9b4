"""The two data sets convert.py knows, and fetching their IDX files from mirrors, verified.

MNIST's original host (yann.lecun.com) answers 404 for many people, so each data set has a
list of mirrors tried in turn (the user's --mirror URLs first). What arrives is trusted only
if the SHA-256 of its DECOMPRESSED content equals the pinned one below: the same check then
works for .gz and raw files, and for Fashion-MNIST copies whose .gz bytes were repacked (e.g.
Debian's) but hold the same images.
"""
from __future__ import annotations

import gzip
import hashlib
import sys
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .cli import UserError, atomic_write

DOWNLOAD_TIMEOUT_S = 30  # per connection attempt and per stalled read
CHUNK_BYTES = 1 << 16
USER_AGENT = "convnet-convert/1.0"  # some hosts refuse urllib's default agent


@dataclass(frozen=True)
class Dataset:
    """What differs between MNIST and Fashion-MNIST: the file names and IDX layout do not."""
    title: str
    extra_mirrors: tuple[str, ...]  # tried after torchvision's own list (see builtin_mirrors)
    content_sha256: dict[str, str]  # file name without .gz -> SHA-256 of its decompressed bytes
    classes: tuple[str, ...]  # label -> class name


DATASETS = {
    "mnist": Dataset(
        title="MNIST",
        # Google's copy, used by the TensorFlow tutorials.
        extra_mirrors=("https://storage.googleapis.com/cvdf-datasets/mnist/",),
        content_sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        classes=tuple(str(digit) for digit in range(10)),
    ),
    "fashion-mnist": Dataset(
        title="Fashion-MNIST",
        # Keras' copy, then the upstream repository itself.
        extra_mirrors=("https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
                       "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"),
        content_sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


class DownloadFailed(Exception):
    """One mirror could not deliver a good copy; the next one is tried."""


def builtin_mirrors(dataset: str) -> list[str]:
    """torchvision's mirror list for the data set, followed by our extra ones."""
    # Imported here, not at the top: torchvision pulls in torch, seconds that a run whose
    # files are already present (the common case, and the no-op rerun) should not pay.
    from torchvision.datasets import MNIST, FashionMNIST
    torchvision_class = {"mnist": MNIST, "fashion-mnist": FashionMNIST}[dataset]
    return list(dict.fromkeys([*torchvision_class.mirrors, *DATASETS[dataset].extra_mirrors]))


def content_sha256(content: bytes) -> str:
    """SHA-256 of an IDX file's decompressed bytes, the form the pinned checksums take."""
    return hashlib.sha256(content).hexdigest()


def identify(name: str, content: bytes) -> str | None:
    """The key of the data set whose published `name` has exactly this content, if any."""
    digest = content_sha256(content)
    for key, dataset in DATASETS.items():
        if dataset.content_sha256.get(name) == digest:
            return key
    return None


def _fetch(url: str, destination: Path) -> None:
    """Stream `url` into `destination` with a progress bar; network errors -> DownloadFailed."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                open(destination, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=Path(url).name, leave=False) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise DownloadFailed(f"HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise DownloadFailed(str(err.reason)) from None
    except (OSError, ValueError) as err:  # timeouts, resets, malformed URLs
        raise DownloadFailed(str(err) or type(err).__name__) from None


def _verify(path: Path, expected_sha256: str) -> None:
    """Raise DownloadFailed unless the downloaded .gz decompresses to the expected content."""
    try:
        content = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error):
        raise DownloadFailed("not a valid gzip file") from None
    if content_sha256(content) != expected_sha256:
        raise DownloadFailed("checksum mismatch, copy rejected")


def download(name: str, data_dir: Path, mirrors: list[str], expected_sha256: str) -> Path:
    """Fetch `name`.gz from the first mirror that delivers a verified copy into data_dir.

    Each attempt streams into a temporary file beside the target, which is renamed into place
    only after its checksum matches, so a failed or interrupted attempt leaves nothing behind.
    Raises UserError listing every URL tried when all mirrors fail.
    """
    destination = data_dir / f"{name}.gz"
    failures = []
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{name}.gz"
        try:
            with atomic_write(destination) as tmp:
                _fetch(url, tmp)
                _verify(tmp, expected_sha256)
        except DownloadFailed as err:
            failures.append(f"{url} ({err})")
            tqdm.write(f"warning: {url}: {err}", file=sys.stderr)
            continue
        tqdm.write(f"downloaded {destination} from {url}")
        return destination
    raise UserError(f"could not download {name}.gz; tried {'; '.join(failures)}. "
                    f"Download it by hand and put it at {destination}, then run again")
