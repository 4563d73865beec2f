"""NVML sessions and the GPU inventory (:mod:`whisperkit.measure.nvml`) against a fake pynvml that
raises nvidia-ml-py's own error classes."""

from __future__ import annotations

import math
import os

import pynvml
import pytest

from whisperkit.measure import nvml

try:
    from tests import fake_pynvml
except ImportError:
    import fake_pynvml



def test_a_value_nvml_does_not_support_is_asked_once(two_gpus):
    with nvml.NvmlSession() as session:
        for _ in range(4):
            values = session.read({os.getpid()})
    assert math.isnan(values["gpu1_power_w"]) and values["gpu0_power_w"] == 251.5
    assert two_gpus.state.calls[("nvmlDeviceGetPowerUsage", 1)] == 1
    assert two_gpus.state.calls[("nvmlDeviceGetPowerUsage", 0)] == 4
    assert two_gpus.state.init_calls == 1 and two_gpus.state.shutdown_calls == 1


def test_energy_is_nan_where_the_gpu_has_no_counter(monkeypatch):
    fake_pynvml.install(monkeypatch, [fake_pynvml.rtx3090(energy_start_mj=None)])  # as before Volta
    with nvml.NvmlSession() as session:
        assert math.isnan(session.read(set())["gpu0_energy_j"])
        assert session.drain_errors() == []  # NotSupported is an answer, not an error


def test_sessions_share_one_nvml_init(two_gpus):
    with nvml.NvmlSession() as first:
        with nvml.NvmlSession() as second:
            assert nvml._users == 2
        assert nvml._users == 1 and two_gpus.state.shutdown_calls == 0
    assert two_gpus.state.init_calls == 1 and two_gpus.state.shutdown_calls == 1
    assert first.available and second.available


def test_gpu_inventory_from_the_fake(two_gpus):
    gpus, reason = nvml.gpu_inventory()
    assert reason is None
    assert gpus == [
        {"index": 0, "name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-5f2d7c1e-8a4b-4b1e-9c55-0d6a2e7f3a10",
         "memory_total_mb": 40960.0, "memory_free_mb": 36352.0, "memory_reserved_mb": 0.0,
         "driver_version": "550.54.15", "cuda_driver_version": "12.4", "mig_mode": False, "gpm": False},
        {"index": 1, "name": "NVIDIA GeForce RTX 3090", "uuid": "GPU-1b9e0c44-27d3-6f0a-b8e2-77c1d5a90e42",
         "memory_total_mb": 24576.0, "memory_free_mb": 14336.0, "memory_reserved_mb": 0.0,
         "driver_version": "550.54.15", "cuda_driver_version": "12.4", "mig_mode": False, "gpm": False},
    ]
    assert two_gpus.state.initialized == 0


def test_fake_raises_the_real_error_classes(two_gpus):
    error = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
    assert type(error) is pynvml.NVMLError_GpuIsLost
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        two_gpus.nvmlDeviceGetCount()
    two_gpus.nvmlInit()
    handle = two_gpus.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        two_gpus.nvmlDeviceGetPowerUsage(handle)
    two_gpus.nvmlShutdown()
