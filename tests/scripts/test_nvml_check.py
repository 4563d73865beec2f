"""benchmarks/nvml_check.py without a GPU: its NVML side against tests/fake_pynvml.py, PyTorch faked.

The fake torch below has only what nvml_check calls (allocation, matmul, synchronize, device
properties); it does no work, so the findings about a busy GPU need not hold here: the tests check
that every step runs, records what NVML answered, and that failures are recorded, not raised.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import pytest
from fake_pynvml import a100, install, install_missing

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "nvml_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("nvml_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


nvml_check = load_script()


class FakeTensor:
    def __matmul__(self, other):
        return FakeTensor()


def fake_torch(available: bool = True) -> types.ModuleType:
    """A stand-in for torch with CUDA: one device on the fake A100's PCI bus id (00000000:07:00.0)."""
    torch = types.ModuleType("torch")
    torch.__version__ = "2.11.0+cu130"
    torch.version = types.SimpleNamespace(cuda="13.0")
    torch.uint8, torch.float16 = "uint8", "float16"
    allocated = {"bytes": 0}

    def ones(size, dtype=None, device=None):
        allocated["bytes"] += size
        return FakeTensor()

    properties = types.SimpleNamespace(name="NVIDIA A100-SXM4-40GB", total_memory=40 * 2**30,
                                       uuid="5f2d7c1e-8a4b-4b1e-9c55-0d6a2e7f3a10",
                                       pci_domain_id=0, pci_bus_id=7, pci_device_id=0)
    torch.cuda = types.SimpleNamespace(
        is_available=lambda: available, device_count=lambda: 1 if available else 0,
        get_device_properties=lambda i: properties, synchronize=lambda: None,
        memory_allocated=lambda i=0: allocated["bytes"], empty_cache=lambda: None)
    torch.zeros = lambda *a, **k: FakeTensor()
    torch.ones = ones
    torch.randn = lambda *a, **k: FakeTensor()
    return torch


@pytest.fixture
def quick(monkeypatch, tmp_path):
    """Seconds instead of the real phases' lengths; the report goes to $OUT."""
    for name, value in (("IDLE_S", 0.4), ("HOLD_S", 0.4), ("MATMUL_S", 0.6), ("CHILD_TIMEOUT_S", 60)):
        monkeypatch.setattr(nvml_check, name, value)
    monkeypatch.setenv("OUT", str(tmp_path))
    return tmp_path


def report_of(folder: Path) -> dict:
    return json.loads((folder / "nvml_check.json").read_text())


def test_without_torch_it_refuses_in_one_line(quick, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert nvml_check.main() == 2
    refused = report_of(quick)["refused"]
    assert "needs PyTorch with CUDA: cannot import torch" in refused
    assert capsys.readouterr().err.strip() == f"nvml_check: {refused}"


def test_where_pytorch_sees_no_cuda_device_it_refuses(quick, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(available=False))
    assert nvml_check.main() == 2
    assert "PyTorch 2.11.0+cu130 (CUDA 13.0) sees no CUDA device" in report_of(quick)["refused"]


def test_without_nvml_it_refuses(quick, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    install_missing(monkeypatch)
    assert nvml_check.main() == 2
    assert report_of(quick)["refused"].startswith("NVML unavailable")


def test_every_step_runs_against_the_fake_nvml_and_records_its_raw_answers(quick, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    install(monkeypatch, [a100(process_sm_util={os.getpid(): [40, 60, 80]})])
    assert nvml_check.main() == 0
    report = report_of(quick)
    steps = report["steps"]
    assert all(step["ok"] for step in steps.values()), {k: v.get("error") for k, v in steps.items()}
    assert steps["environment"]["result"]["driver"] == "550.54.15"
    assert steps["environment"]["result"]["nvml"] == "nvmlSystemGetNVMLVersion absent"  # the fake lacks it
    device = steps["nvml_devices"]["result"][0]
    assert device["pci_bus_id"] == "00000000:07:00.0" and device["mig_mode"] == [0, 0]
    assert device["memory"]["v1"]["total"] == 40 * 1024
    assert device["memory"]["v2"]["used"] == 4608 and device["memory"]["v2"]["reserved"] == 0  # the fake answers v2
    assert steps["torch_devices"]["result"][0]["nvml_index"] == 0  # matched by PCI bus id
    assert "''" in steps["visible_devices"]["result"]  # CUDA_VISIBLE_DEVICES="" was tried in a child
    load = steps["known_load"]["result"]
    assert [p["label"] for p in load["phases"]] == ["idle", "alloc", "matmul", "idle after"]
    assert load["allocated_mb"] == nvml_check.ALLOC_MIB
    assert "gpu0_util_percent" in load["sampler"]["timeline"]["columns"]
    raw = load["raw"]
    assert {s["pid"] for r in raw["process_util"] for s in r.get("samples", [])} == {os.getpid()}
    assert raw["slow"][0]["nvmlDeviceGetComputeRunningProcesses"][0]["pid"] == os.getpid()
    assert raw["slow"][0]["nvmlDeviceGetComputeRunningProcesses_v2"] == "nvmlDeviceGetComputeRunningProcesses_v2 absent"
    assert [g.get("error") for g in raw["gpm"]] == ["NVMLError_NotSupported: Not Supported"]  # no GPM on an A100: once
    findings = {f["what"]: f for f in steps["findings"]["result"]}
    api = findings["per-process utilization API"]
    assert api["own_pid_seen"] and api["calls"] > 10
    assert api["sample_spacing_ms_median"] == pytest.approx(1000 / 6, abs=1)  # the fake driver's period
    assert "NVMLError_NotFound" in api["errors"]  # asked every 50 ms, new samples every 1/6 s
    assert findings["utilization during matmuls (%)"]["measured"] == 87  # the fake's fixed reading, not "busy"


def test_a_failing_step_and_a_plain_exception_from_nvml_are_recorded_not_raised(quick, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    fake = install(monkeypatch, [a100(process_sm_util={os.getpid(): 50})])

    def mismatch(handle):
        raise Exception("NVMLLibraryMismatchError: the driver lacks _v3")  # a plain Exception, as pynvml raises

    monkeypatch.setattr(fake, "nvmlDeviceGetComputeRunningProcesses", mismatch)
    monkeypatch.setattr(nvml_check, "visible_devices", lambda devices: 1 / 0)
    assert nvml_check.main() == 1
    steps = report_of(quick)["steps"]
    assert report_of(quick)["failed_steps"] == ["visible_devices"]
    assert steps["visible_devices"] == {**steps["visible_devices"], "ok": False, "error": "ZeroDivisionError: division by zero"}
    assert steps["known_load"]["ok"] and steps["findings"]["ok"]
    slow = steps["known_load"]["result"]["raw"]["slow"]
    assert all(r["nvmlDeviceGetComputeRunningProcesses"].startswith("Exception: NVMLLibraryMismatchError") for r in slow)


def test_not_found_gaps_and_sample_spacing():
    records = [{"t": 0.0, "samples": [{"pid": 7, "ts_us": 1_000_000, "sm": 50, "mem": 10}]},
               {"t": 0.05, "error": "NVMLError_NotFound"}, {"t": 0.10, "error": "NVMLError_NotFound"},
               {"t": 0.40, "samples": [{"pid": 7, "ts_us": 1_400_000, "sm": 60, "mem": 10}]}]
    api = nvml_check.process_api(records)
    assert api["longest_not_found_s"] == pytest.approx(0.35) and api["sample_spacing_ms_median"] == 400
    assert api["pids_seen"] == [7] and api["errors"] == {"NVMLError_NotFound": 2}


def add_gpm(fake, sm_activity: float) -> list:
    """GPM on the fake, with nvidia-ml-py's real structs: every metric reads ``sm_activity`` except
    DRAM bandwidth, which the fake driver does not support (its per-metric return code is set)."""
    from fake_pynvml import real  # nvidia-ml-py itself (sys.modules holds the fake)

    freed, samples = [], []
    fake.nvmlGpmQueryDeviceSupport = lambda handle: real.c_nvmlGpmSupport_t(version=1, isSupportedDevice=1)

    def alloc():
        samples.append(real.struct_c_nvmlGpmSample_t())  # kept alive: the pointer must not dangle
        return real.c_nvmlGpmSample_t(samples[-1])

    fake.nvmlGpmSampleAlloc = alloc
    fake.nvmlGpmSampleGet = lambda handle, sample: sample
    fake.nvmlGpmSampleFree = freed.append
    fake.c_nvmlGpmMetricsGet_t = real.c_nvmlGpmMetricsGet_t
    fake.NVML_GPM_METRICS_GET_VERSION = real.NVML_GPM_METRICS_GET_VERSION

    def metrics_get(request):
        assert request.version == real.NVML_GPM_METRICS_GET_VERSION and request.sample1 and request.sample2
        for i in range(request.numMetrics):
            metric = request.metrics[i]
            if metric.metricId == real.NVML_GPM_METRIC_DRAM_BW_UTIL:
                metric.nvmlReturn = real.NVML_ERROR_NOT_SUPPORTED
            else:
                metric.value = sm_activity
        return request

    fake.nvmlGpmMetricsGet = metrics_get
    return freed


def test_gpm_metrics_are_read_between_two_samples_with_the_real_structs(quick, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    fake = install(monkeypatch, [a100()])
    freed = add_gpm(fake, 35.0)
    monkeypatch.setattr(nvml_check, "visible_devices", lambda devices: {})
    assert nvml_check.main() == 0
    steps = report_of(quick)["steps"]
    assert steps["nvml_devices"]["result"][0]["gpm_supported"] is True
    gpm = steps["known_load"]["result"]["raw"]["gpm"]
    assert gpm and all(g["sm_activity_percent"] == 35.0 and g["tensor_activity_percent"] == 35.0 for g in gpm)
    assert all(g["dram_bw_percent"] == f"NVML error {3}" for g in gpm)  # NVML_ERROR_NOT_SUPPORTED, per metric
    assert len(freed) == len(gpm)  # each older sample freed once used
