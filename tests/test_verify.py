"""verify_torch_GPU.py: what a user sees on a machine without a GPU, and that a check can fail."""
from __future__ import annotations

import json

import torch

from conftest import run_script
from convnet.gpu_check import check_device, format_report, verify

NO_GPU = not torch.cuda.is_available() and not torch.backends.mps.is_available()


def test_report_names_versions_and_exits_0_without_gpu() -> None:
    result = run_script("verify_torch_GPU.py")
    assert result.returncode == 0, result.stderr
    assert f"torch        {torch.__version__}" in result.stdout
    assert "torchvision" in result.stdout and "python" in result.stdout
    if NO_GPU:
        assert "no GPU found: torch will run on the CPU" in result.stdout
    assert result.stderr == ""


def test_require_gpu_fails_without_gpu_and_json_is_one_object() -> None:
    result = run_script("verify_torch_GPU.py", "--require-gpu", "--json")
    report = json.loads(result.stdout)
    assert report["torch"] == torch.__version__
    assert report["cuda_built"] == torch.backends.cuda.is_built()
    assert report["gpu_found"] == (not NO_GPU)
    assert result.returncode == (1 if NO_GPU else 0)


def test_cpu_computes_the_same_as_itself_with_timings() -> None:
    check = check_device("cpu")
    assert check["ok"]
    for case in ("matmul", "conv2d"):
        assert check[case]["relative_error"] <= 1e-6
        assert check[case]["ms"] > 0 and check[case]["tflops"] > 0


def test_a_device_that_computes_wrong_numbers_is_reported_as_a_failure() -> None:
    report = verify(run_checks=False)
    fine = {"relative_error": 1e-7, "ok": True, "ms": 1.0, "tflops": 1.0}
    broken = {"device": "cpu", "ok": False, "matmul": {**fine, "relative_error": 0.5, "ok": False},
              "conv2d": fine}
    report.update(gpu_found=True, checks=[broken], ok=False)
    text = format_report(report)
    assert "cpu          matmul  MISMATCH vs CPU (relative error 5.0e-01)" in text
    assert text.splitlines()[-1].startswith("result       FAILED")
