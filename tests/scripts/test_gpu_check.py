"""benchmarks/gpu_check.py, as a user runs it, and each of its checks fed readings that must fail."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

try:
    from tests import machine
except ImportError:
    import machine

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SIMGPU = "/work/shared/tools/simgpu"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = load_script()


def run_check(tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--output-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_gpu_check_says_what_this_machine_lacks(tmp_path):
    if machine.cuda_usable():
        pytest.skip("CUDA runs here: see test_gpu_check_passes_on_a_gpu")
    result = run_check(tmp_path)
    assert "Traceback" not in result.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    not_measured = {item["what"] for item in report["not_measured"]}
    assert "memory model against a real batch" in not_measured and "energy counter" in not_measured
    if report.get("no_gpu"):
        assert result.returncode == 0, result.stderr
        assert "No NVIDIA GPU here" in result.stdout and "nothing to check" in result.stdout
        assert report["checks"] == []
    else:  # the driver answers but CUDA cannot run: the failed check names the fix
        assert result.returncode == 1
        assert "[FAIL] CUDA usable" in result.stdout
        assert (tmp_path / "gpu_check.txt").is_file()


def test_under_simgpu_nvml_lists_a_gpu_cuda_cannot_run_and_it_exits_1(tmp_path):
    from whisperkit.measure import cuda

    if cuda.cuda_libraries().ok:
        pytest.skip("this machine has the CUDA libraries, so simgpu cannot make them missing")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SIMGPU, str(ROOT)])}
    result = run_check(tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "[pass] NVML lists a GPU: 1 GPU(s)" in result.stdout
    assert "[FAIL] CUDA usable: ctranslate2 cannot load libcublas.so.12" in result.stdout
    assert "pip install 'whisperkit[gpu]'" in result.stdout and "nothing to check" not in result.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {item["what"] for item in report["not_measured"]} == set(gpu_check.LATER_CHECKS)
    assert "not measured: model's GPU known to NVML" in (tmp_path / "gpu_check.txt").read_text()


def test_an_unexpected_error_is_a_failed_check_and_a_report_not_a_traceback(tmp_path, monkeypatch, capsys):
    def broken(args, report):
        report.check("NVML lists a GPU", True, "1 GPU(s)")
        raise KeyError("gpus")

    monkeypatch.setattr(gpu_check, "check_machine", broken)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--output-dir", str(tmp_path)])
    assert gpu_check.main() == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["checks"][-1] == {"check": "gpu_check ran to the end", "passed": False,
                                    "detail": "stopped by KeyError: 'gpus'"}
    assert "Traceback" in report["traceback"] and "Traceback" not in capsys.readouterr().err


def readings(values):
    values = [v for v in values if v == v]
    return gpu_check.Readings(values[0], min(values), max(values), float(np.median(values)), len(values))


def fake_run(columns: dict, *, seconds: float = 4.0, process_reason=None, compute_type="float16"):
    samples = len(next(iter(columns.values())))
    timeline = pd.DataFrame({"time_s": np.linspace(0, seconds, samples), **{f"gpu0_{k}": v for k, v in columns.items()}})
    return SimpleNamespace(timeline=timeline, metrics={"wer_vs_reference": 0.05}, environment={},
                           utilization=SimpleNamespace(timeline=timeline, process_gpu_unavailable_reason=process_reason),
                           transcript=SimpleNamespace(config={"device": "cuda", "compute_type": compute_type, "model": "tiny.en"},
                                                      batch_retries=[]))


IDLE = {"util_percent": readings([0, 0, 0]), "mem_used_mb": readings([600, 600, 600]), "power_w": readings([69, 70, 71]),
        "energy_j": None}


def verdicts(report):
    return {c["check"].split(": ", 1)[1]: c["passed"] for c in report.checks} | {
        m["what"].split(": ", 1)[1]: None for m in report.not_measured}


def check(run, errors=None):
    report = gpu_check.Report()
    report.data["runs"] = {"r": {}}
    gpu_check.check_run(report, "r", run, SimpleNamespace(errors=errors or {}), 0, IDLE)
    return report, verdicts(report)


def busy_run(**changes):
    n = 40
    columns = {"util_percent": [95.0] * n, "mem_used_mb": [1400.0] * n, "power_w": [150.0] * n,
               "energy_j": list(np.arange(n) * 150.0 * 4.0 / (n - 1)), "process_util_percent": [90.0] * n}
    columns.update(changes)
    return fake_run(columns)


def test_a_busy_gpu_passes_every_check():
    report, result = check(busy_run())
    assert all(c["passed"] for c in report.checks), report.checks
    assert not report.not_measured


def test_each_reading_that_did_not_move_fails():
    n = 40
    _, result = check(busy_run(util_percent=[0.0] * n))
    assert result["utilization moved"] is False
    _, result = check(busy_run(power_w=[71.0, 74.0] * (n // 2)))  # within the idle noise
    assert result["power moved"] is False
    _, result = check(busy_run(mem_used_mb=[640.0] * n))  # above idle, but less than the weights
    assert result["memory moved"] is False
    _, result = check(busy_run(energy_j=list(np.arange(n) * 3.0)))  # the counter far from power x time
    assert result["energy counter"] is False
    _, result = check(busy_run(process_util_percent=[0.0] * n))
    assert result["per-process utilization never a false 0"] is False
    _, result = check(busy_run(process_util_percent=[0.0] * n, util_percent=[3.0] * n))  # not busy: cannot tell
    assert result["per-process utilization"] is None


def test_what_the_gpu_cannot_give_is_not_measured_never_passed():
    n = 40
    report, result = check(busy_run(process_util_percent=[float("nan")] * n, power_w=[float("nan")] * n,
                                    energy_j=[float("nan")] * n))
    assert result["per-process utilization"] is None and result["power moved"] is None
    assert result["energy counter"] is None
    passed = {c["check"] for c in report.checks if c["passed"]}
    assert not any("per-process" in name or "power" in name or "energy" in name for name in passed)


def test_sampler_errors_that_lost_samples_fail_and_a_column_never_answered_is_not_measured():
    n = 40
    run = busy_run(process_util_percent=[float("nan")] * n)
    _, result = check(run, errors={"gpu0_util_percent": 3, "gpu0_process_util_percent": n, "gpu1_power_w": 5})
    assert result["sampler lost no readings of GPU 0"] is False
    assert result["gpu0_process_util_percent"] is None
    _, result = check(busy_run(), errors={"gpu1_power_w": 5})  # another GPU's errors are not the model's
    assert result["sampler lost no readings of GPU 0"] is True


def test_the_whole_flow_with_readings_from_a_fake_gpu_and_the_model_on_the_cpu(tmp_path, monkeypatch, clips):
    """--device cpu with a fake NVML GPU: every step runs (the GPU readings do not move, so their
    checks fail), the memory model's batch runs, and the report holds it all."""
    from fake_pynvml import a100, install

    install(monkeypatch, [a100(util_gpu_percent=0, process_sm_util={os.getpid(): 0})])
    monkeypatch.setattr(gpu_check, "MEMORY_CHECK_BATCH", 2)
    monkeypatch.setattr(gpu_check, "IDLE_S", 0.5)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", "--audio", clips[1], "--output-dir", str(tmp_path)])
    assert gpu_check.main() == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = {c["check"]: c for c in report["checks"]}
    assert "gpu_check ran to the end" not in checks, checks.get("gpu_check ran to the end")
    assert checks["model's GPU known to NVML"]["passed"] and checks["idle baseline before the model loads"]["passed"]
    assert not checks["sequential: on the GPU"]["passed"] and checks["sequential: words right"]["passed"]
    assert not checks["sequential: utilization moved"]["passed"]  # the fake reads 0 %
    assert not checks["sequential: memory moved"]["passed"]  # the fake's memory never changes
    assert "sequential: power moved" in checks and "sequential: sampler lost no readings of GPU 0" in checks
    memory = report["memory_model"]
    assert memory["first_batch_size_that_ran"] == 2 and memory["estimate_mb"] > 0
    assert not checks["memory model against a real batch: peak within the estimate"]["passed"]  # nothing showed
    not_measured = {m["what"] for m in report["not_measured"]}
    assert "sequential: per-process utilization" in not_measured  # the GPU never read busy


@pytest.mark.gpu
@pytest.mark.model
def test_gpu_check_passes_on_a_gpu(tmp_path):
    result = run_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
