"""convert.py as a user runs it: exact PNGs and lists, clear one-line errors, no-op reruns, and
complete output after a crash. Small IDX files are written by the tests; the real data sets are
converted in full by the tests marked slow."""
from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.io
from PIL import Image

from conftest import IDX_NAMES, ROOT, idx_bytes, run_script, write_mnist_like
from convnet.idx import load_split

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = IDX_NAMES


def convert(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_script("convert.py", "--data-dir", data_dir, "--no-download", *args)


def read_list(path: Path) -> list[tuple[str, int]]:
    return [(name, int(label)) for name, label in (line.split() for line in path.read_text().splitlines())]


def assert_output_matches(data_dir: Path, arrays: dict[str, np.ndarray], limit: int | None = None) -> None:
    """Lists name every image in IDX order with its label; each PNG holds exactly the IDX pixels."""
    for split, images_name, labels_name in (("train", TRAIN_IMAGES, TRAIN_LABELS),
                                            ("test", TEST_IMAGES, TEST_LABELS)):
        images, labels = arrays[images_name][:limit], arrays[labels_name][:limit]
        expected = [(f"{split}/{i:05d}.png", int(label)) for i, label in enumerate(labels)]
        assert read_list(data_dir / f"{split}.txt") == expected
        assert sorted(os.listdir(data_dir / split)) == [name.split("/")[1] for name, _ in expected]
        for (name, _), image in zip(expected, images):
            png = skimage.io.imread(data_dir / name)
            assert png.dtype == np.uint8 and png.shape == (28, 28)
            np.testing.assert_array_equal(png, image)


def test_converts_gz_files_to_exact_pngs_and_lists(tmp_path):
    arrays = write_mnist_like(tmp_path, n_train=30, n_test=12)
    result = convert(tmp_path)
    assert result.returncode == 0, result.stderr
    assert_output_matches(tmp_path, arrays)
    assert (tmp_path / "classes.txt").read_text().split() == [str(d) for d in range(10)]
    assert "converted 30 train + 12 test MNIST images" in result.stdout
    # Random test files are not the published MNIST: used, with a warning per file.
    assert result.stderr.count("differs from the published MNIST checksum") == 4


def test_accepts_decompressed_files_and_limit(tmp_path):
    arrays = write_mnist_like(tmp_path, n_train=30, n_test=12, compress=False)
    result = convert(tmp_path, "--limit", "5", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert_output_matches(tmp_path, arrays, limit=5)


def test_fashion_mnist_writes_its_class_names(tmp_path):
    write_mnist_like(tmp_path, n_train=4, n_test=2)
    result = convert(tmp_path, "--dataset", "fashion-mnist")
    assert result.returncode == 0, result.stderr
    classes = (tmp_path / "classes.txt").read_text().splitlines()
    assert classes[0] == "T-shirt/top" and classes[9] == "Ankle boot" and len(classes) == 10


def _truncate(raw: bytes) -> bytes:
    return raw[:-100]


def _corrupt_gzip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 16]) + data[middle + 16:]


# Each case rewrites one file of a valid set: (file, new .gz content from the arrays, message).
INVALID_INPUTS = {
    "truncated": (TRAIN_IMAGES, lambda a: gzip.compress(_truncate(idx_bytes(a[TRAIN_IMAGES]))), "truncated"),
    "wrong magic": (TRAIN_LABELS, lambda a: gzip.compress(idx_bytes(a[TRAIN_LABELS], magic=0x0802)),
                    "wrong magic number"),
    "wrong dimensions": (TEST_IMAGES, lambda a: gzip.compress(idx_bytes(np.zeros((12, 32, 32)))),
                         "32x32, expected 28x28"),
    "count mismatch": (TEST_LABELS, lambda a: gzip.compress(idx_bytes(a[TEST_LABELS][:-1])),
                       "holds 12 images but"),
    "label out of range": (TRAIN_LABELS, lambda a: gzip.compress(idx_bytes(np.full(30, 10))),
                           "label 10 at index 0 is out of range 0-9"),
    "corrupt gzip": (TRAIN_IMAGES, lambda a: _corrupt_gzip(gzip.compress(idx_bytes(a[TRAIN_IMAGES]))),
                     "corrupt or truncated gzip"),
    "empty file": (TEST_IMAGES, lambda a: b"", "file is empty"),
}


@pytest.mark.parametrize("case", INVALID_INPUTS)
def test_invalid_input_fails_with_one_line_naming_the_file(tmp_path, case):
    name, make_bad_file, message = INVALID_INPUTS[case]
    arrays = write_mnist_like(tmp_path, n_train=30, n_test=12)
    (tmp_path / f"{name}.gz").write_bytes(make_bad_file(arrays))
    result = convert(tmp_path)
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and f"{name}.gz" in result.stderr
    assert message in result.stderr
    assert not (tmp_path / "train.txt").exists() and not (tmp_path / "test.txt").exists()


def test_missing_files_with_no_download_say_where_to_put_them(tmp_path):
    result = convert(tmp_path / "empty")
    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1
    assert "lacks train-images-idx3-ubyte.gz" in result.stderr and "by hand" in result.stderr
    assert "Traceback" not in result.stderr


def test_rerun_does_nothing_and_force_redoes(tmp_path):
    write_mnist_like(tmp_path, n_train=30, n_test=12)
    assert convert(tmp_path).returncode == 0
    png = tmp_path / "train" / "00000.png"
    first_inode = png.stat().st_ino
    rerun = convert(tmp_path)
    assert rerun.returncode == 0 and "up to date" in rerun.stdout and "nothing to do" in rerun.stdout
    assert png.stat().st_ino == first_inode  # untouched
    forced = convert(tmp_path, "--force")
    assert "converted 30 train + 12 test" in forced.stdout
    assert png.stat().st_ino != first_inode  # written again


def test_new_limit_or_inputs_replace_the_whole_output(tmp_path):
    write_mnist_like(tmp_path, n_train=30, n_test=12, seed=1)
    assert convert(tmp_path).returncode == 0
    assert convert(tmp_path, "--limit", "4").returncode == 0
    assert sorted(os.listdir(tmp_path / "train")) == [f"{i:05d}.png" for i in range(4)]
    arrays = write_mnist_like(tmp_path, n_train=8, n_test=3, seed=2)  # new files, same names
    result = convert(tmp_path)
    assert "converted 8 train + 3 test" in result.stdout
    assert_output_matches(tmp_path, arrays)


def test_rerun_after_a_crash_completes_the_output(tmp_path):
    """What a run killed mid-way leaves (half-filled hidden folder with a half PNG, a temp list, no
    stamp) or a user's deleted images are repaired by the next run."""
    arrays = write_mnist_like(tmp_path, n_train=30, n_test=12)
    assert convert(tmp_path).returncode == 0
    (tmp_path / "train" / "00007.png").unlink()
    partial = tmp_path / ".test.partial"
    partial.mkdir()
    (partial / "00000.png").write_bytes(b"\x89PNG\r\n\x1a\n half")
    (tmp_path / ".train.txt.abc123.tmp").write_text("train/00000.png 5\n")
    result = convert(tmp_path)
    assert result.returncode == 0 and "converted 30 train + 12 test" in result.stdout
    assert_output_matches(tmp_path, arrays)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".convert.json"]


def test_killed_run_never_leaves_lists_naming_missing_images(tmp_path):
    """SIGKILL the whole process group while PNGs are being written, then run again."""
    arrays = write_mnist_like(tmp_path, n_train=10000, n_test=100)
    process = subprocess.Popen([sys.executable, str(ROOT / "convert.py"), "--data-dir", str(tmp_path),
                                "--no-download", "--workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    partial = tmp_path / ".train.partial"
    while not (partial.is_dir() and len(os.listdir(partial)) > 500) and process.poll() is None:
        assert time.monotonic() < deadline, "conversion never started writing"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "train.txt").exists(), "killed run left a list behind"
    assert not (tmp_path / "train").exists()
    result = convert(tmp_path, "--limit", "2000")  # completes the output; --limit keeps it short
    assert result.returncode == 0, result.stderr
    assert_output_matches(tmp_path, arrays, limit=2000)


def _convert_real(source: Path, tmp_path: Path, dataset: str) -> None:
    """Convert a full real data set and check all 70,000 PNGs against the IDX bytes."""
    for name in IDX_NAMES:
        (tmp_path / f"{name}.gz").symlink_to(source / f"{name}.gz")
    result = convert(tmp_path, "--dataset", dataset)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning") == 0, result.stderr  # the published files verify
    assert "converted 60,000 train + 10,000 test" in result.stdout
    for split, count in (("train", 60_000), ("test", 10_000)):
        images, labels = load_split(tmp_path, split)
        listed = read_list(tmp_path / f"{split}.txt")
        assert len(listed) == count
        assert listed == [(f"{split}/{i:05d}.png", int(label)) for i, label in enumerate(labels)]
        for i, (name, _) in enumerate(listed):
            with Image.open(tmp_path / name) as png:  # PIL: the reader under skimage.io, 5x faster here
                assert png.mode == "L" and png.size == (28, 28)
                np.testing.assert_array_equal(np.asarray(png), images[i], err_msg=name)
    assert "up to date" in convert(tmp_path, "--dataset", dataset).stdout


@pytest.mark.slow
def test_real_mnist_end_to_end(real_mnist_dir, tmp_path):
    _convert_real(real_mnist_dir, tmp_path, "mnist")


@pytest.mark.slow
def test_real_fashion_mnist_end_to_end(real_fashion_mnist_dir, tmp_path):
    _convert_real(real_fashion_mnist_dir, tmp_path, "fashion-mnist")


@pytest.mark.slow
def test_fashion_files_under_the_mnist_name_get_a_hint(real_fashion_mnist_dir, tmp_path):
    for name in IDX_NAMES:
        (tmp_path / f"{name}.gz").symlink_to(real_fashion_mnist_dir / f"{name}.gz")
    result = convert(tmp_path, "--limit", "10")
    assert result.returncode == 0
    assert result.stderr.count("it is the Fashion-MNIST file; pass --dataset fashion-mnist") == 4
