"""Image lists -> tensors: same pixels as the IDX route, a cache that notices changes, clear
errors naming file and line, and a loader whose shards split each epoch exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import io

from conftest import IDX_NAMES, write_mnist_like
from convnet.cli import UserError
from convnet.data import CACHE_DIR, ImageSet, TensorLoader, load_data


def write_lists(data_dir, arrays) -> None:
    """What convert.py does: one PNG per image and the two list files."""
    for split, (images_name, labels_name) in {"train": IDX_NAMES[:2], "test": IDX_NAMES[2:]}.items():
        (data_dir / split).mkdir()
        lines = []
        for index, (image, label) in enumerate(zip(arrays[images_name], arrays[labels_name])):
            io.imsave(data_dir / split / f"{index:05d}.png", image, check_contrast=False)
            lines.append(f"{split}/{index:05d}.png {label}\n")
        (data_dir / f"{split}.txt").write_text("".join(lines))


@pytest.fixture
def list_dir(tmp_path):
    arrays = write_mnist_like(tmp_path / "idx", n_train=30, n_test=12)
    data_dir = tmp_path / "lists"
    data_dir.mkdir()
    write_lists(data_dir, arrays)
    return data_dir


def test_lists_and_idx_files_give_identical_tensors(list_dir, tmp_path):
    train, test, names = load_data(list_dir, workers=1)
    idx_train, idx_test, idx_names = load_data(tmp_path / "idx")
    assert train.images.dtype == torch.uint8 and train.images.shape == (30, 28, 28)
    assert torch.equal(train.images, idx_train.images) and torch.equal(train.labels, idx_train.labels)
    assert torch.equal(test.images, idx_test.images) and torch.equal(test.labels, idx_test.labels)
    assert names == idx_names == [str(label) for label in range(len(names))]


def test_parallel_decoding_matches_serial(list_dir):
    serial, _, _ = load_data(list_dir, workers=1)
    for cache in (list_dir / CACHE_DIR).iterdir():
        cache.unlink()
    parallel, _, _ = load_data(list_dir, workers=2)
    assert torch.equal(serial.images, parallel.images)


def test_cache_is_reused_then_rebuilt_when_an_image_changes(list_dir):
    first, _, _ = load_data(list_dir, workers=1)
    caches = sorted((list_dir / CACHE_DIR).glob("train-*.pt"))
    assert len(caches) == 1
    second, _, _ = load_data(list_dir, workers=1)
    assert torch.equal(first.images, second.images)
    assert sorted((list_dir / CACHE_DIR).glob("train-*.pt")) == caches  # no new decode
    io.imsave(list_dir / "train" / "00003.png", np.full((28, 28), 77, np.uint8), check_contrast=False)
    third, _, _ = load_data(list_dir, workers=1)
    assert (third.images[3] == 77).all() and torch.equal(third.images[4], first.images[4])


def test_colour_images_of_another_size_are_resized_to_gray(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        for index in range(3):
            io.imsave(tmp_path / split / f"{index}.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
        (tmp_path / f"{split}.txt").write_text("".join(f"{split}/{i}.png {i}\n" for i in range(3)))
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n")
    train, test, names = load_data(tmp_path, image_size=28, workers=1)
    assert train.images.shape == (3, 28, 28) and train.images.dtype == torch.uint8
    assert names == ["cat", "dog", "bird"]


@pytest.mark.parametrize("line, message", [
    ("train/00000.png", "expected '<image path> <label>'"),
    ("train/00000.png five", "label 'five' is not an integer"),
    ("train/00000.png -1", "label -1 is negative"),
    ("train/missing.png 3", "not found"),
    ("../idx/escape.png 3", "points outside the data folder"),
])
def test_bad_list_line_is_named_with_its_line_number(list_dir, line, message):
    lines = (list_dir / "train.txt").read_text().splitlines()
    lines.insert(4, line)
    (list_dir / "train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=message) as error:
        load_data(list_dir, workers=1)
    assert "train.txt:5" in str(error.value)


def test_unreadable_and_inconsistent_images_are_refused(list_dir):
    (list_dir / "train" / "00002.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"train\.txt:3: cannot read image"):
        load_data(list_dir, workers=1)
    io.imsave(list_dir / "train" / "00002.png", np.zeros((32, 32), np.uint8), check_contrast=False)
    with pytest.raises(UserError, match=r"train\.txt:3: image is 32x32 .* --image-size"):
        load_data(list_dir, workers=1)
    train, _, _ = load_data(list_dir, image_size=28, workers=1)  # resizing fixes it
    assert train.images.shape == (30, 28, 28)


def test_empty_list_and_missing_data_are_clear_errors(list_dir, tmp_path):
    (list_dir / "train.txt").write_text("\n")
    with pytest.raises(UserError, match="train.txt: the list is empty"):
        load_data(list_dir)
    with pytest.raises(UserError, match="no train.txt and no MNIST IDX files"):
        load_data(tmp_path / "nothing")


def test_loader_shards_cover_each_epoch_once_and_reshuffle():
    data = ImageSet(torch.arange(103, dtype=torch.uint8).reshape(103, 1, 1), torch.arange(103), "toy")
    shards = [TensorLoader(data, 10, True, seed=5, rank=rank, world_size=2) for rank in (0, 1)]
    seen = [torch.cat([labels for _, labels in shard]) for shard in shards]
    assert len(seen[0]) == len(seen[1]) == 51 and len(shards[0]) == len(shards[1]) == 6
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    for shard in shards:
        shard.set_epoch(1)
    assert not torch.equal(torch.cat([labels for _, labels in shards[0]]), seen[0])
    single = torch.cat([labels for _, labels in TensorLoader(data, 10, False)])
    assert torch.equal(single, torch.arange(103))
