"""What verify_torch_GPU.py reports: versions, accelerators, and whether they compute correctly.

`machine_report()` gathers the facts (versions, whether this torch build has CUDA, every CUDA
device, MPS). `check_device(device)` runs a matrix product and a 2-D convolution on the
device and compares them with the same computation on the CPU; a result off by more than
TOLERANCE (relative to the largest value) is a failure, because a GPU that computes wrong
numbers is worse than none. `verify()` puts both together into one JSON-ready dict.
"""
from __future__ import annotations

import platform
import time
from typing import Any

# float32 on GPUs may use TF32 (10-bit mantissa) for convolutions by default: relative errors
# of ~1e-3 are expected; a broken device or driver is off by orders of magnitude more.
TOLERANCE = 1e-2
MATMUL_SIZE = 2048
CONV_SHAPE = (64, 32, 56, 56)   # batch, channels, height, width; 3x3 kernel, 64 output channels
TIMED_REPEATS = 10


def machine_report() -> dict[str, Any]:
    """Versions and accelerators, without computing anything."""
    import torch

    try:
        import torchvision
        torchvision_version = torchvision.__version__
    except ImportError:
        torchvision_version = None
    cudnn = torch.backends.cudnn
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision_version,
        "cuda_built": torch.backends.cuda.is_built(),   # does this torch build include CUDA?
        "cuda_version": torch.version.cuda,             # CUDA the build was compiled against
        "cudnn_version": _cudnn_version_text(cudnn.version()) if cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),   # a driver and at least one GPU usable
        "cuda_devices": [],
        "mps_built": torch.backends.mps.is_built(),
        "mps_available": torch.backends.mps.is_available(),
    }
    if report["cuda_available"]:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            report["cuda_devices"].append({
                "index": index, "name": props.name,
                "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
                "multiprocessors": props.multi_processor_count,
            })
    return report


def _cudnn_version_text(number: int | None) -> str | None:
    """cuDNN reports one integer: major*10000+minor*100+patch from 9.0 on, major*1000+... before."""
    if number is None:
        return None
    major_unit = 10000 if number >= 10000 else 1000
    return f"{number // major_unit}.{number % major_unit // 100}.{number % 100}"


def accelerators(report: dict[str, Any]) -> list[str]:
    """Device names to test: every CUDA device, then MPS."""
    names = [f"cuda:{device['index']}" for device in report["cuda_devices"]]
    if report["mps_available"]:
        names.append("mps")
    return names


def relative_error(result, reference) -> float:
    """Largest absolute difference, relative to the largest magnitude in the reference."""
    scale = float(reference.abs().max()) or 1.0
    return float((result.double() - reference.double()).abs().max()) / scale


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(function, device) -> tuple[Any, float]:
    """Run once to warm up (kernel selection, lazy init), then time TIMED_REPEATS runs; ms each."""
    result = function()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(TIMED_REPEATS):
        result = function()
    _synchronize(device)
    return result, (time.perf_counter() - start) / TIMED_REPEATS * 1e3


def check_device(name: str, seed: int = 0) -> dict[str, Any]:
    """Matmul and conv2d on `name` vs the CPU: errors, pass/fail, timings (ms, TFLOP/s)."""
    import torch
    import torch.nn.functional as F

    device = torch.device(name)
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator)
    images = torch.randn(*CONV_SHAPE, generator=generator)
    kernels = torch.randn(64, CONV_SHAPE[1], 3, 3, generator=generator)

    results: dict[str, Any] = {"device": name, "ok": True}
    matmul_flop = 2 * MATMUL_SIZE ** 3
    batch, channels, height, width = CONV_SHAPE
    conv_flop = 2 * batch * 64 * height * width * channels * 9
    cases = {
        "matmul": (lambda x, y: x @ y, (a, b), matmul_flop),
        "conv2d": (lambda x, w: F.conv2d(x, w, padding=1), (images, kernels), conv_flop),
    }
    for case, (operation, inputs, flop) in cases.items():
        reference = operation(*inputs)
        on_device = [tensor.to(device) for tensor in inputs]
        result, milliseconds = _timed(lambda: operation(*on_device), device)
        error = relative_error(result.cpu(), reference)
        passed = error <= TOLERANCE
        results[case] = {"relative_error": error, "ok": passed, "ms": round(milliseconds, 3),
                         "tflops": round(flop / milliseconds / 1e9, 2)}
        results["ok"] &= passed
    return results


def verify(run_checks: bool = True) -> dict[str, Any]:
    """The full report: machine facts plus one check per accelerator."""
    report = machine_report()
    report["gpu_found"] = bool(accelerators(report))
    report["checks"] = [check_device(name) for name in accelerators(report)] if run_checks else []
    report["ok"] = all(check["ok"] for check in report["checks"])
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as the lines a person reads."""
    lines = [
        f"python       {report['python']}  ({report['platform']})",
        f"torch        {report['torch']}",
        f"torchvision  {report['torchvision'] or 'not installed'}",
    ]
    if report["cuda_built"]:
        lines.append(f"CUDA         torch built with CUDA {report['cuda_version']}, "
                     f"cuDNN {report['cudnn_version'] or 'not available'}")
    else:
        lines.append("CUDA         this torch build has no CUDA support (CPU-only or other backend)")
    if report["cuda_available"]:
        for device in report["cuda_devices"]:
            lines.append(f"cuda:{device['index']}       {device['name']}, compute capability "
                         f"{device['capability']}, {device['memory_gib']} GiB, "
                         f"{device['multiprocessors']} SMs")
    elif report["cuda_built"]:
        lines.append("             but no CUDA device is usable here (no NVIDIA GPU, or no driver)")
    if report["mps_built"]:
        lines.append(f"MPS          {'available' if report['mps_available'] else 'built, but not available'}")
    for check in report["checks"]:
        for case in ("matmul", "conv2d"):
            result = check[case]
            verdict = "ok" if result["ok"] else "MISMATCH"
            lines.append(f"{check['device']:<12} {case:<7} {verdict} vs CPU (relative error "
                         f"{result['relative_error']:.1e}), {result['ms']:.2f} ms, "
                         f"{result['tflops']:.1f} TFLOP/s")
    if not report["gpu_found"]:
        lines.append("result       no GPU found: torch will run on the CPU")
    elif report["ok"]:
        lines.append(f"result       {len(report['checks'])} accelerator(s) found, all computing correctly")
    else:
        lines.append("result       FAILED: an accelerator computed results that differ from the CPU")
    return "\n".join(lines)
