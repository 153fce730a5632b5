"""benchmarks/device_check.sh in its quick CPU mode, so that the GPU run cannot rot before a GPU is lent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_device_check_runs_every_section_on_cpu(shared_dir) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--quick", "--device", "cpu"],
        capture_output=True, text=True, timeout=900, env=env, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "4 of 4 sections done" in out
    assert out.count(": ok)") == 5 and "ABOVE" not in out  # speechsr 24k/48k, backbone, TTV semantic and F0
    assert out.count("losses finite") == 3
