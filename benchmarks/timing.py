"""What the benchmarks share: run one of the project's scripts as a user does, and time it."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str) -> tuple[float, str]:
    """`python <script> <args>` from the repository root: (wall seconds, stdout). Exits on failure."""
    command = [sys.executable, str(ROOT / script), *map(str, args)]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed with status {result.returncode}")
    return seconds, result.stdout
