"""Which NVML device runs the model: CUDA_VISIBLE_DEVICES, PCI bus ids and MIG, against a fake pynvml."""

from __future__ import annotations

import sys

import pytest

import whisperkit as wk
from whisperkit.core import batching
from whisperkit.measure import devices

try:
    from tests import fake_pynvml
except ImportError:
    import fake_pynvml

GIB_MB = 1024.0


@pytest.fixture
def node(monkeypatch):
    """NVML (PCI order): 0 an RTX 3090, 1 an A100, 2 an H100 in MIG mode; the CUDA driver library absent."""
    fake = fake_pynvml.make_fake([fake_pynvml.rtx3090(), fake_pynvml.a100(), fake_pynvml.h100_mig()])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(devices, "_cuda_pci_bus_id", lambda index: None)
    return fake


def at(cuda_index: int = 0, **environ: str) -> devices.ModelGpu:
    return devices.model_gpu(cuda_index, environ)


def test_without_cuda_visible_devices_cuda_numbers_follow_pci_order(node):
    assert [at(i).nvml_index for i in range(2)] == [0, 1]
    assert "assumes PCI order" in at(0).how  # different GPUs, default order: said, not hidden
    assert "assumes PCI order" not in at(0, CUDA_DEVICE_ORDER="PCI_BUS_ID").how


def test_cuda_visible_devices_by_index_uuid_and_prefix(node):
    assert at(0, CUDA_VISIBLE_DEVICES="1").nvml_index == 1
    assert [at(i, CUDA_VISIBLE_DEVICES="1,0").nvml_index for i in range(2)] == [1, 0]
    a100 = at(0, CUDA_VISIBLE_DEVICES="GPU-5f2d7c1e-8a4b-4b1e-9c55-0d6a2e7f3a10")
    assert (a100.nvml_index, a100.name, a100.memory_total_mb) == (1, "NVIDIA A100-SXM4-40GB", 40 * GIB_MB)
    assert at(0, CUDA_VISIBLE_DEVICES="GPU-1b9e").nvml_index == 0  # a unique prefix, as CUDA accepts


def test_cuda_stops_at_the_first_entry_it_cannot_read(node):
    assert at(0, CUDA_VISIBLE_DEVICES="1,7,0").nvml_index == 1
    missing = at(1, CUDA_VISIBLE_DEVICES="1,7,0")
    assert missing.nvml_index is None and "not among the 1 visible" in missing.how
    assert at(0, CUDA_VISIBLE_DEVICES="").nvml_index is None  # nothing visible


def test_a_mig_instance_has_its_own_memory_not_the_cards(node):
    mig = at(0, CUDA_VISIBLE_DEVICES="MIG-7f8e9d0c-2b1a-4c3d-8e5f-6a7b8c9d0e1f")
    assert mig.nvml_index == 2 and mig.mig_uuid.startswith("MIG-7f8e")
    assert (mig.memory_total_mb, mig.memory_free_mb) == (40 * GIB_MB, 38 * GIB_MB)  # the 3g.40gb, not 80 GB


def test_auto_batch_size_reads_the_models_device(node, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,MIG-4a2b6c8d-1e3f-5a7b-9c0d-2e4f6a8b0c1d")
    assert batching.free_gpu_memory_gb(0) == pytest.approx(9.0)  # index 2: the H100's first slice, 1g.10gb
    assert wk.recommend_batch_size("large-v3", "float16", memory_gb=9.0) < wk.recommend_batch_size(
        "large-v3", "float16", memory_gb=68.0)  # what the whole card's free memory would have allowed
    model = wk.Model(whisper=None, name="large-v3", path="", device="cuda", compute_type="float16", device_index=0)
    assert batching.recommend_for_model(model) == wk.recommend_batch_size(
        "large-v3", "float16", memory_gb=9.0, weights_loaded=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert batching.free_gpu_memory_gb(0) == pytest.approx(14.0)  # the RTX 3090: 24 GiB, 10 in use
    assert batching.free_gpu_memory_gb(1) is None  # only one device visible


def test_the_pci_bus_id_from_cuda_decides_the_match(node, monkeypatch):
    """CUDA's default order is fastest first: CUDA 0 may be the A100 although NVML calls it 1."""
    monkeypatch.setattr(devices, "_cuda_pci_bus_id", lambda index: ["0000:07:00.0", "0000:65:00.0"][index])
    first = at(0)
    assert first.nvml_index == 1 and "PCI bus id 0000:07:00.0" in first.how
    assert at(1).nvml_index == 0


def test_bus_ids_compare_in_one_form():
    assert devices.normal_bus_id("00000000:65:00.0") == devices.normal_bus_id("0000:65:00.0") == "0000:65:00.0"
    assert devices.normal_bus_id("garbage") is None and devices.normal_bus_id(None) is None


def test_no_driver_is_an_answer(monkeypatch):
    import pynvml

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make_fake(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    gpu = at(0)
    assert gpu.nvml_index is None and "driver is not loaded" in gpu.how


def test_the_environment_names_the_models_gpu(node, monkeypatch):
    from whisperkit.measure.environment import collect_environment, format_environment

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    env = collect_environment(cuda_index=0)
    assert env["model_gpu"]["nvml_index"] == 1 and env["model_gpu"]["name"] == "NVIDIA A100-SXM4-40GB"
    assert "GPU 1 (CUDA device 0): NVIDIA A100" in format_environment(env)
    assert collect_environment()["model_gpu"] is None
