"""detect.py as a user runs it: answers, JSON, model-format images unchanged, bad input and
unsafe checkpoints reported in one line, --plot written."""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.io
import torch

from conftest import ROOT, run_script
from convnet.model import CHECKPOINT_FORMAT, ConvNet, save_checkpoint, to_model_input
from convnet.predict import collect_inputs

NORMALIZE = {"mean": 0.1307, "std": 0.3081}
MODEL_ARGS = {"num_classes": 10, "widths": (8, 16), "convs_per_stage": 1}


def make_checkpoint(path: Path, model: ConvNet | None = None, model_args: dict | None = None) -> Path:
    """A checkpoint in main.py's format around a small untrained ConvNet (fixed seed)."""
    torch.manual_seed(0)
    model = model or ConvNet(**MODEL_ARGS)
    save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT, "model": model.state_dict(),
        "model_args": model_args or MODEL_ARGS, "class_names": [str(i) for i in range(10)],
        "image_size": 28, "normalize": NORMALIZE, "epoch": 0, "epochs": 0,
        "test_accuracy": None, "config": {}, "versions": {}})
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def digit_photo(path: Path) -> Path:
    """Dark ink on light paper, larger than 28x28: a ring (a '0')."""
    yy, xx = np.mgrid[0:200, 0:160]
    radius = np.hypot((yy - 90) / 1.3, xx - 70)
    ink = np.clip(1 - np.abs(radius - 40) / 8, 0, 1)
    skimage.io.imsave(path, np.round(235 - 200 * ink).astype(np.uint8), check_contrast=False)
    return path


def test_model_format_folder_gives_exactly_the_direct_model_output(tmp_path, checkpoint):
    """What convert.py writes reaches the model untouched: same answers, same probabilities."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 28, 28)).astype(np.uint8)
    images[:, :4], images[:, -4:], images[:, :, :4], images[:, :, -4:] = 0, 0, 0, 0  # dark frame
    folder = tmp_path / "test"
    folder.mkdir()
    for i, image in enumerate(images):
        skimage.io.imsave(folder / f"{i:05d}.png", image, check_contrast=False)

    result = run_script("detect.py", folder, "--checkpoint", checkpoint, "--json", "--topk", "10")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["path"]).name for r in records] == [f"{i:05d}.png" for i in range(24)]

    model = ConvNet(**MODEL_ARGS)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    with torch.no_grad():
        expected = torch.softmax(model.eval()(to_model_input(torch.from_numpy(images), NORMALIZE)), 1)
    assert [r["label"] for r in records] == expected.argmax(1).tolist()
    for record, probabilities in zip(records, expected):
        top = dict(record["top"])
        assert np.allclose([top[k] for k in range(10)], probabilities.numpy(), atol=1e-5)


def test_text_output_topk_and_blank_page(tmp_path, checkpoint):
    photo = digit_photo(tmp_path / "zero.jpg")
    blank = tmp_path / "blank.png"
    skimage.io.imsave(blank, np.full((300, 200), 240, np.uint8), check_contrast=False)

    result = run_script("detect.py", photo, blank, "--checkpoint", checkpoint, "--topk", "3")
    assert result.returncode == 0, result.stderr  # a blank page is an answer, not a failure
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{photo}: ") and lines[0].count("%") == 3 and "; next: " in lines[0]
    assert lines[1] == f"{blank}: no digit found (blank image)"

    result = run_script("detect.py", blank, "--checkpoint", checkpoint, "--json")
    assert json.loads(result.stdout) == {"path": str(blank), "label": None, "name": None,
                                         "confidence": None, "top": [], "blank": True}


def test_bad_images_are_reported_one_line_each_and_the_rest_labelled(tmp_path, checkpoint):
    good = digit_photo(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:300])
    (tmp_path / "no_images").mkdir()
    skimage.io.imsave(tmp_path / "big.png", np.zeros((300, 300), np.uint8), check_contrast=False)
    bad = ["missing.png", "empty.png", "notes.jpg", "cut.png", "no_images", "big.png"]

    result = run_script("detect.py", *[tmp_path / name for name in bad], good,
                        "--checkpoint", checkpoint, "--max-pixels", "50000")
    assert result.returncode == 1
    assert result.stdout.startswith(f"{good}: ")
    errors = result.stderr.splitlines()
    assert len(errors) == len(bad) and "Traceback" not in result.stderr
    for name in bad:
        assert sum(line.startswith(f"error: {tmp_path / name}: ") for line in errors) == 1, name
    assert any("too large to decode safely" in line for line in errors)


class MaliciousPayload:
    """Unpickling this would create a marker file: the code a weights_only load must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_carrying_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": MaliciousPayload(marker)}, evil,
               pickle_protocol=pickle.DEFAULT_PROTOCOL)
    photo = digit_photo(tmp_path / "zero.png")
    result = run_script("detect.py", photo, "--checkpoint", evil)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "refused" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "other architecture"])
def test_unusable_checkpoint_is_one_clear_line(tmp_path, checkpoint, kind):
    path = tmp_path / "bad.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(checkpoint.read_bytes()[:2000])
    elif kind == "other architecture":  # weights of a 5-class net, described as 10 classes
        make_checkpoint(path, model=ConvNet(**{**MODEL_ARGS, "num_classes": 5}))
    result = run_script("detect.py", digit_photo(tmp_path / "zero.png"), "--checkpoint", path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_plot_shows_input_model_view_and_probabilities(tmp_path, checkpoint):
    photos = [digit_photo(tmp_path / f"zero{i}.png") for i in range(3)]
    out = tmp_path / "figures" / "why.png"
    result = run_script("detect.py", *photos, "--checkpoint", checkpoint, "--plot", out)
    assert result.returncode == 0, result.stderr
    figure = skimage.io.imread(out)
    assert figure.shape[0] > figure.shape[1] / 3 and figure.std() > 10  # three rows drawn
    assert [p.name for p in out.parent.iterdir()] == ["why.png"]  # no temp file left behind


def test_inputs_from_folders_globs_and_files_without_duplicates(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/1.png", "a/deep/2.JPG", "a/readme.txt", "b.png"):
        (tmp_path / name).write_bytes(b"x")
    paths, problems = collect_inputs([str(tmp_path / "a"), str(tmp_path / "*.png"),
                                      str(tmp_path / "a" / "1.png"), str(tmp_path / "nope*.png")])
    assert paths == [str(tmp_path / "a" / "1.png"), str(tmp_path / "a" / "deep" / "2.JPG"),
                     str(tmp_path / "b.png")]
    assert problems == [(str(tmp_path / "nope*.png"), "no file matches this pattern")]


@pytest.mark.slow
def test_real_mnist_test_pngs_keep_the_models_accuracy(tmp_path, real_mnist_dir):
    """Real MNIST test digits written as PNGs: detect.py agrees with the model on every one."""
    from convnet.idx import load_split

    images, _ = load_split(real_mnist_dir, "test")
    images = images[:300]
    for i, image in enumerate(images):
        skimage.io.imsave(tmp_path / f"{i:05d}.png", image, check_contrast=False)
    checkpoint = make_checkpoint(tmp_path / "tiny.pt")
    result = run_script("detect.py", tmp_path, "--checkpoint", checkpoint, "--json")
    assert result.returncode == 0, result.stderr
    labels = [json.loads(line)["label"] for line in result.stdout.splitlines()]
    model = ConvNet(**MODEL_ARGS)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    with torch.no_grad():
        expected = model.eval()(to_model_input(torch.from_numpy(images.copy()), NORMALIZE)).argmax(1)
    assert labels == expected.tolist()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to stand for a full disk")
def test_output_to_a_full_disk_or_a_closed_pipe_ends_without_a_traceback(tmp_path, checkpoint):
    photos = [digit_photo(tmp_path / f"{index}.png") for index in range(3)]
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, str(ROOT / "detect.py"), *map(str, photos),
                                 "--checkpoint", str(checkpoint)], stdout=full, stderr=subprocess.PIPE,
                                text=True, timeout=600)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: [Errno 28] No space left on device"

    # `detect.py ... | head -1`: the reader leaves after one line; no traceback, no noise. The
    # output (600 JSON lines with ten guesses each, over 150 KB) cannot all fit in the pipe's buffer
    # before the reader leaves, so the writer surely meets the closed pipe.
    copies = tmp_path / "copies"
    copies.mkdir()
    for index in range(600):
        shutil.copy(photos[0], copies / f"{index:03d}.png")
    reader = subprocess.Popen([sys.executable, str(ROOT / "detect.py"), copies, "--json", "--topk", "10",
                               "--checkpoint", str(checkpoint)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = reader.stdout.readline()
    reader.stdout.close()
    errors = reader.stderr.read()
    assert reader.wait(timeout=600) == 1
    assert json.loads(first)["path"] == str(copies / "000.png")
    assert "Traceback" not in errors and "Exception ignored" not in errors, errors
