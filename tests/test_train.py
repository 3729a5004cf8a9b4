"""main.py as a user runs it: what it writes, what it prints, that it learns, that the same seed
gives the same result, and that a stopped or killed run resumes to the uninterrupted result."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_script, write_learnable_idx
from convnet.model import load_checkpoint, model_from_checkpoint
from convnet.train import WeightAverage

# A tiny network and schedule: a few seconds per run on two busy cores.
SMALL = ("--widths", "8,16", "--batch-size", "32", "--lr", "0.01", "--device", "cpu", "--threads", "1")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("learnable")
    write_learnable_idx(path, n_train=600, n_test=200)
    return path


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    """One uninterrupted 3-epoch run that several tests compare against."""
    out = tmp_path_factory.mktemp("reference")
    result = run_script("main.py", "--data-dir", data_dir, *SMALL, "--epochs", "3", "--seed", "1",
                        "--checkpoint", out / "model.pt", "--run-dir", out / "run")
    assert result.returncode == 0, result.stderr
    return out, result


def test_run_learns_and_writes_checkpoint_metrics_and_plots(reference_run):
    out, result = reference_run
    checkpoint = load_checkpoint(out / "model.pt")
    assert checkpoint["test_accuracy"] > 0.9
    assert checkpoint["epoch"] == checkpoint["epochs"] == 3
    assert checkpoint["class_names"] == [str(k) for k in range(10)] and checkpoint["image_size"] == 28
    model = model_from_checkpoint(checkpoint)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    # The default preset saves the weight average for detect.py and keeps the trained weights to resume.
    assert checkpoint["average_updates"] == 3 * 19
    assert any(not torch.equal(checkpoint["model"][k], checkpoint["training_model"][k]) for k in checkpoint["model"])
    with open(out / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(checkpoint["test_accuracy"])
    for name in ("curves.png", "confusion_matrix.png", "misclassified.png"):
        assert (out / "run" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "epoch  3/3" in result.stdout + result.stderr
    assert f"test accuracy {100 * checkpoint['test_accuracy']:.2f}%" in result.stdout


def test_same_seed_same_result_and_other_seed_differs(reference_run, data_dir, tmp_path):
    out, _ = reference_run
    reference = load_checkpoint(out / "model.pt")
    for seed, same in (("1", True), ("2", False)):
        result = run_script("main.py", "--data-dir", data_dir, *SMALL, "--epochs", "3", "--seed", seed,
                            "--checkpoint", tmp_path / f"{seed}.pt", "--run-dir", tmp_path / seed)
        assert result.returncode == 0, result.stderr
        again = load_checkpoint(tmp_path / f"{seed}.pt")
        weights_equal = all(torch.equal(again["model"][k], reference["model"][k]) for k in reference["model"])
        assert weights_equal == same
        if same:
            assert again["test_accuracy"] == reference["test_accuracy"]


def _start(data_dir, checkpoint, run_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data_dir), *SMALL,
                             "--epochs", "3", "--seed", "1", "--checkpoint", str(checkpoint),
                             "--run-dir", str(run_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_file(path, process, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_stopped_run_resumes_to_the_uninterrupted_result(reference_run, data_dir, tmp_path, stop_signal):
    checkpoint = tmp_path / "model.pt"
    process = _start(data_dir, checkpoint, tmp_path / "run")
    _wait_for_file(checkpoint, process)  # written at the end of epoch 1
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=120)
    if stop_signal == signal.SIGTERM:
        assert process.returncode == 128 + signal.SIGTERM
        assert f"Resume with: python main.py --resume {checkpoint}" in stderr
        assert "Traceback" not in stderr
    else:
        assert process.returncode == -signal.SIGKILL
    stopped = load_checkpoint(checkpoint)
    assert (stopped["epoch"], stopped["batches_done"]) < (3, 0)

    result = run_script("main.py", "--resume", checkpoint, "--device", "cpu", "--threads", "1")
    assert result.returncode == 0, result.stderr
    resumed, reference = load_checkpoint(checkpoint), load_checkpoint(reference_run[0] / "model.pt")
    assert resumed["epoch"] == 3
    assert resumed["test_accuracy"] == reference["test_accuracy"]
    assert all(torch.equal(resumed["model"][k], reference["model"][k]) for k in reference["model"])


def test_unwritable_output_fails_before_training(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = run_script("main.py", "--data-dir", data_dir, *SMALL, "--checkpoint", blocker / "model.pt",
                        "--run-dir", tmp_path / "run")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "cannot write the checkpoint" in result.stderr
    assert "Traceback" not in result.stderr and "epoch" not in result.stderr


def test_bad_data_is_one_line_error(tmp_path):
    (tmp_path / "train.txt").write_text("a.png 1\n")
    result = run_script("main.py", "--data-dir", tmp_path, "--checkpoint", tmp_path / "m.pt",
                        "--run-dir", tmp_path / "run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'test.txt'}: not found "
                                                  f"(a test list is needed beside train.txt to measure accuracy)"]


def test_saved_accuracy_is_what_detect_gets_on_the_test_images(reference_run, data_dir, tmp_path):
    """Training may compute in bfloat16, but the accuracy in the checkpoint is the one detect.py
    gets on the same test images (written as PNGs by convert.py)."""
    out, _ = reference_run
    for source in data_dir.glob("*.gz"):
        (tmp_path / source.name).symlink_to(source)
    assert run_script("convert.py", "--data-dir", tmp_path, "--no-download").returncode == 0
    result = run_script("detect.py", tmp_path / "test", "--checkpoint", out / "model.pt", "--json")
    assert result.returncode == 0, result.stderr
    predicted = {Path(row["path"]).name: row["label"] for row in map(json.loads, result.stdout.splitlines())}
    truth = [line.split() for line in (tmp_path / "test.txt").read_text().splitlines()]
    correct = sum(predicted[Path(path).name] == int(label) for path, label in truth)
    assert len(predicted) == len(truth) == 200
    assert correct / len(truth) == pytest.approx(load_checkpoint(out / "model.pt")["test_accuracy"], abs=1e-9)


@pytest.mark.parametrize("flags", [("--max-rotation", "-5"), ("--max-scale", "1.5"), ("--max-shift", "-1")])
def test_impossible_augmentation_is_refused_before_training(tmp_path, flags):
    result = run_script("main.py", "--data-dir", tmp_path, *flags)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --max-shift, --max-rotation and --max-scale must be "
                                                  "0 or more (--max-scale below 1)"]


@pytest.mark.parametrize("horizon", ["-0.1", "1.5"])
def test_weight_average_horizon_outside_0_to_1_is_refused(tmp_path, horizon):
    result = run_script("main.py", "--data-dir", tmp_path, "--ema-horizon", horizon)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: --ema-horizon {float(horizon)}: must be a fraction "
                                                  f"from 0 to 1"]


def test_help_names_the_defaults():
    result = run_script("main.py", "--help")
    assert result.returncode == 0
    assert "--quick" in result.stdout and "(default: data)" in result.stdout


@pytest.mark.slow
def test_quick_preset_reaches_99_percent_on_real_mnist(real_mnist_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for source in real_mnist_dir.glob("*.gz"):
        (data / source.name).symlink_to(source)
    result = run_script("main.py", "--quick", "--data-dir", data, "--checkpoint", tmp_path / "m.pt",
                        "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(tmp_path / "m.pt")["test_accuracy"] >= 0.99


def test_strided_network_with_hidden_layer_trains_and_mismatched_strides_are_refused(data_dir, tmp_path):
    result = run_script("main.py", "--data-dir", data_dir, *SMALL, "--strides", "2,2", "--hidden", "16",
                        "--epochs", "2", "--checkpoint", tmp_path / "m.pt", "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint["model_args"]["strides"] == [2, 2] and checkpoint["model_args"]["hidden"] == 16
    assert checkpoint["test_accuracy"] > 0.9
    model_from_checkpoint(checkpoint)  # rebuilt from model_args alone, as detect.py does

    result = run_script("main.py", "--data-dir", data_dir, *SMALL, "--strides", "2,2,1",
                        "--checkpoint", tmp_path / "x.pt", "--run-dir", tmp_path / "x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --strides 2,2,1 and --widths 8,16: give one stride per stage"]


def test_weight_average_of_fraction_1_is_the_mean_of_all_steps_and_0125_favours_the_last():
    model = torch.nn.BatchNorm1d(3)
    means = {fraction: WeightAverage(model, fraction) for fraction in (1.0, 0.125)}
    for step in range(40):
        with torch.no_grad():
            model.weight.fill_(float(step))
        for average in means.values():
            average.update(model)
    assert torch.allclose(means[1.0].model.weight, torch.full((3,), 19.5))  # mean of 0..39
    assert 39 - 0.125 * 40 - 1 < means[0.125].model.weight[0] < 39  # about the last 5 steps
    assert means[1.0].updates == 40
