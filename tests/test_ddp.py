"""torchrun: two CPU processes (gloo) train the same script, write one ordinary checkpoint, land
close to the single-process run with the same total batch, and fail fast instead of hanging."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_script, write_learnable_idx
from convnet.model import load_checkpoint, model_from_checkpoint

RUN = ("--widths", "8,16", "--batch-size", "32", "--lr", "0.01", "--epochs", "3", "--device", "cpu",
       "--threads", "1", "--seed", "1")


def torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "main.py"), *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("learnable")
    write_learnable_idx(path, n_train=600, n_test=200)
    return path


def test_two_process_run_matches_single_process(data_dir, tmp_path):
    result = torchrun("--data-dir", data_dir, *RUN, "--checkpoint", tmp_path / "ddp.pt",
                      "--run-dir", tmp_path / "ddp")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "x 2 processes" in result.stderr + result.stdout
    assert result.stdout.count("test accuracy") == 1  # rank 0 alone reports
    ddp = load_checkpoint(tmp_path / "ddp.pt")
    model_from_checkpoint(ddp)  # what detect.py does
    assert (tmp_path / "ddp" / "confusion_matrix.png").is_file()

    single = run_script("main.py", "--data-dir", data_dir, *RUN, "--checkpoint", tmp_path / "one.pt",
                        "--run-dir", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    reference = load_checkpoint(tmp_path / "one.pt")
    assert ddp["test_accuracy"] > 0.9
    assert abs(ddp["test_accuracy"] - reference["test_accuracy"]) <= 0.05


def test_failure_in_one_process_ends_the_run_with_a_message(tmp_path):
    (tmp_path / "train.txt").write_text("missing.png 1\n")
    (tmp_path / "test.txt").write_text("missing.png 1\n")
    result = torchrun("--data-dir", tmp_path, *RUN, "--checkpoint", tmp_path / "m.pt",
                      "--run-dir", tmp_path / "run", timeout=120)
    assert result.returncode != 0
    assert "train.txt:1: image" in result.stderr and "not found" in result.stderr
