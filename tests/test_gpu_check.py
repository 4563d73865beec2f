"""benchmarks/gpu_check.py, as a user runs it: what it says depends on what this machine has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    from tests import machine
except ImportError:
    import machine

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run_check(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--output-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=600)


def test_gpu_check_says_what_this_machine_lacks(tmp_path):
    if machine.cuda_usable():
        pytest.skip("CUDA runs here: see test_gpu_check_passes_on_a_gpu")
    result = run_check(tmp_path)
    assert "Traceback" not in result.stderr
    driver_answers = machine.has_nvml_gpu() or machine.cuda_device_count() > 0
    if not driver_answers:
        assert result.returncode == 0, result.stderr
        assert "No NVIDIA GPU here" in result.stdout and "nothing to check" in result.stdout
    else:  # the driver answers but the CUDA libraries are missing: the failed check names the fix
        assert result.returncode == 1
        assert "[FAIL] CUDA usable" in result.stdout and "pip install 'whisperkit[gpu]'" in result.stdout
        assert (tmp_path / "gpu_check.json").is_file() and (tmp_path / "gpu_check.txt").is_file()


@pytest.mark.gpu
def test_gpu_check_passes_on_a_gpu(tmp_path):
    result = run_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
