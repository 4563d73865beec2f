"""Finding models and choosing device and compute type (expectations follow what this machine has)."""

from __future__ import annotations

import time

import pytest

import whisperkit as wk
from whisperkit.core import models
from whisperkit.measure import cuda

try:
    from tests import machine
except ImportError:
    import machine


def test_default_is_the_bundled_tiny_en_where_auto_puts_it(model):
    assert model.name == "tiny.en"
    assert model.path == models.bundled_model_path()
    device, reason = machine.auto_device()
    assert (model.device, model.compute_type) == (device, machine.auto_compute_type())
    assert model.whisper.model.device == device
    assert model.device_reason == reason and model.describe()["device_reason"] == reason
    if device == "cpu":
        assert model.compute_type == "int8" and reason


def test_same_settings_reuse_the_loaded_model():
    first = wk.load_model("tiny.en")
    assert wk.load_model().whisper is first.whisper
    assert wk.load_model(first.path).whisper is first.whisper
    assert wk.load_model(num_workers=2).whisper is not first.whisper


def test_local_folder_is_loaded(model):
    local = wk.load_model(model.path, compute_type="float32")
    assert local.name == model.path and local.compute_type == "float32"
    assert local.whisper is not model.whisper


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(wk.ModelError, match=r"unknown model 'huge-v9'.*large-v3.*turbo"):
        wk.load_model("huge-v9")


def test_named_model_not_cached_offline_says_what_to_do(offline_hub):
    started = time.monotonic()
    with pytest.raises(wk.ModelError, match=r"'small' is not in the local cache and could not be downloaded.*local CTranslate2 folder"):
        wk.load_model("small")
    assert time.monotonic() - started < 60


def test_missing_folder_and_folder_without_weights(tmp_path):
    with pytest.raises(wk.ModelError, match="does not exist"):
        wk.load_model(str(tmp_path / "nowhere"))
    with pytest.raises(wk.ModelError, match="has no model.bin"):
        wk.load_model(str(tmp_path))


def test_cuda_where_it_cannot_run_is_a_one_line_device_error():
    device, reason = machine.auto_device()
    if device == "cuda":
        pytest.skip("CUDA runs here; see test_cuda_transcribes_on_the_gpu")
    with pytest.raises(wk.DeviceError, match="device cuda was asked for, but .*use device cpu or auto") as caught:
        wk.load_model(device="cuda")
    message = str(caught.value)
    assert "\n" not in message
    assert reason.removesuffix("; running on the CPU") in message  # what auto said, e.g. the missing library


@pytest.mark.gpu
def test_cuda_transcribes_on_the_gpu(clips):
    on_gpu = wk.load_model(device="cuda")
    assert (on_gpu.device, on_gpu.device_reason, on_gpu.whisper.model.device) == ("cuda", None, "cuda")
    transcript = wk.transcribe(clips[1], model=on_gpu, mode="batched", batch_size=4, progress=False)
    assert "steady wins the race" in transcript.text.lower()


@pytest.fixture
def fresh_cuda_libraries():
    cuda.cuda_libraries.cache_clear()
    yield
    cuda.cuda_libraries.cache_clear()


def gpu_without_cublas(monkeypatch):
    """ctranslate2 sees a GPU, but no libcublas.so.12 anywhere (as on a box set up without CUDA 12)."""
    monkeypatch.setattr(models, "cuda_device_count", lambda: 1)
    missing = cuda.CudaLibraries(("libcublas.so.12",), {}, ("libcublas.so.12",),
                                 {"libcublas.so.12": "libcublas.so.12: cannot open shared object file"})
    monkeypatch.setattr(models, "cuda_libraries", lambda: missing)


def test_auto_runs_on_the_cpu_where_cublas_is_missing_and_says_why(monkeypatch):
    gpu_without_cublas(monkeypatch)
    choice = models.device_choice("auto")
    assert choice.device == "cpu"
    assert "libcublas.so.12 (CUDA 12 cuBLAS)" in choice.reason and "pip install 'whisperkit[gpu]'" in choice.reason
    assert choice.reason.endswith("running on the CPU")


def test_cuda_where_cublas_is_missing_names_the_library_and_the_fix(monkeypatch):
    gpu_without_cublas(monkeypatch)
    with pytest.raises(wk.DeviceError) as caught:
        wk.load_model(device="cuda")
    message = str(caught.value)
    assert "\n" not in message and "libcublas.so.12" in message and "pip install 'whisperkit[gpu]'" in message


def test_cuda_device_index_beyond_the_visible_ones(monkeypatch):
    monkeypatch.setattr(models, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(models, "cuda_libraries", lambda: cuda.CudaLibraries(("libcublas.so.12",), {"libcublas.so.12": "x"}))
    assert models.device_choice("cuda", 1) == models.DeviceChoice("cuda", 1)
    with pytest.raises(wk.DeviceError, match="CUDA device index 2 was asked for, but ctranslate2 sees 2"):
        models.device_choice("cuda", 2)
    with pytest.raises(wk.ConfigError, match="device_index"):
        wk.load_model(device_index=-1)
    with pytest.raises(wk.ConfigError, match="device_index"):
        wk.Config(device_index=True)
    assert wk.Config(device_index=1).to_dict()["device_index"] == 1


def test_cuda_libraries_are_loaded_from_the_nvidia_wheels(monkeypatch, tmp_path, fresh_cuda_libraries):
    """Not on the system's library path, but in site-packages/nvidia/cublas/lib (pip install whisperkit[gpu])."""
    wheel = tmp_path / "nvidia" / "cublas" / "lib"
    wheel.mkdir(parents=True)
    for name in ("libcublas.so.12", "libcublasLt.so.12"):
        (wheel / name).write_bytes(b"")
    loaded = []

    def dlopen(name_or_path):
        if "/" not in name_or_path:
            raise OSError(f"{name_or_path}: cannot open shared object file: No such file or directory")
        loaded.append(name_or_path)

    monkeypatch.setattr(cuda, "_dlopen", dlopen)
    monkeypatch.setattr(cuda, "needed_libraries", lambda: ("libcublas.so.12", "libcudnn.so.9"))
    monkeypatch.syspath_prepend(str(tmp_path))
    found = cuda.cuda_libraries()
    assert loaded == [str(wheel / "libcublasLt.so.12"), str(wheel / "libcublas.so.12")]  # cuBLASLt first
    assert found.found == {"libcublas.so.12": str(wheel / "libcublas.so.12")}
    assert found.missing == ("libcudnn.so.9",) and "cannot open shared object" in found.errors["libcudnn.so.9"]
    assert found.reason == "ctranslate2 cannot load libcudnn.so.9 (cuDNN 9); pip install 'whisperkit[gpu]'"


def test_the_installed_ctranslate2_needs_cublas_12():
    assert "libcublas.so.12" in cuda.needed_libraries()


@pytest.mark.parametrize("message, oom", [
    ("CUDA failed with error out of memory", True),
    ("cuBLAS failed with status CUBLAS_STATUS_ALLOC_FAILED", True),
    ("cuDNN failed with status CUDNN_STATUS_ALLOC_FAILED", True),
    ("CUDA failed with error an illegal memory access was encountered", False),
    ("cuBLAS failed with status CUBLAS_STATUS_EXECUTION_FAILED", False),
])
def test_one_detector_for_device_allocation_failures(message, oom):
    assert cuda.is_out_of_memory(RuntimeError(message)) is oom
    assert cuda.is_cuda_error(RuntimeError(message))
    assert not cuda.is_cuda_error(RuntimeError("Unable to open file 'model.bin'"))


def test_at_most_one_model_stays_on_a_gpu(monkeypatch):
    monkeypatch.setattr(models, "_load_now", lambda *args: (object(), 0.1))
    models.clear_model_cache()
    try:
        first = models._load("/m/large-v3", "cuda", "float16", 1, 0, 0)
        assert models._load("/m/large-v3", "cuda", "float16", 1, 0, 0) is first
        models._load("/m/turbo", "cuda", "float16", 1, 0, 0)
        on_gpu = [key for key in models._cache if key[1] == "cuda"]
        assert [key[0] for key in on_gpu] == ["/m/turbo"]
        for name in ("a", "b", "c", "d", "e"):
            models._load(f"/m/{name}", "cpu", "int8", 1, 0, 0)
        assert sum(key[1] == "cpu" for key in models._cache) == models.CACHED_CPU_MODELS
    finally:
        models.clear_model_cache()


def test_unsupported_compute_type_lists_supported_ones():
    with pytest.raises(wk.DeviceError, match=r"'float16' is not supported on cpu; supported here: .*int8"):
        wk.load_model(device="cpu", compute_type="float16")


def test_unknown_device_and_bad_worker_counts():
    with pytest.raises(wk.ConfigError, match="unknown device 'tpu'"):
        wk.load_model(device="tpu")
    with pytest.raises(wk.ConfigError, match="num_workers"):
        wk.load_model(num_workers=0)
    with pytest.raises(wk.ConfigError, match="cpu_threads"):
        wk.load_model(cpu_threads=-1)


def test_auto_picks_cuda_and_float16_where_ctranslate2_sees_a_gpu_and_its_libraries(monkeypatch):
    monkeypatch.setattr(models, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(models, "cuda_libraries", lambda: cuda.CudaLibraries(("libcublas.so.12",), {"libcublas.so.12": "x"}))
    monkeypatch.setattr(models, "supported_compute_types",
                        lambda device: {"float16", "int8_float16", "int8", "float32"} if device == "cuda" else {"int8", "float32"})
    assert models.device_choice("auto").device == "cuda" and models.device_choice("auto").reason is None
    assert models.pick_compute_type("cuda", "auto") == "float16"
    assert models.pick_compute_type("cpu", "auto") == "int8"


def test_auto_on_a_gpu_without_float16_falls_back(monkeypatch):
    monkeypatch.setattr(models, "supported_compute_types", lambda device: {"int8", "float32"})
    assert models.pick_compute_type("cuda", "auto") == "float32"


def test_num_workers_sets_ctranslate2_workers(model):
    workers = wk.load_model(num_workers=2)  # two workers sharing one copy of the weights
    assert workers.whisper.model.num_workers == 2
    assert workers.describe()["num_workers"] == 2


class FakeLibcuda:
    """The four functions of ``libcuda.so.1`` that driver_status calls, answering like a driver
    whose cuInit returns ``init_code`` (CUresult) and that supports CUDA ``version``."""

    NAMES = {999: (b"CUDA_ERROR_UNKNOWN", b"unknown error"), 100: (b"CUDA_ERROR_NO_DEVICE", b"no CUDA-capable device is detected")}

    def __init__(self, init_code=0, version=12040, count=1):
        self.init_code, self.version, self.count = init_code, version, count

    def cuInit(self, flags):
        return self.init_code

    def cuDriverGetVersion(self, ref):
        ref._obj.value = self.version
        return 0

    def cuDeviceGetCount(self, ref):
        ref._obj.value = self.count
        return 0 if self.init_code == 0 else 3

    def cuGetErrorName(self, code, ref):
        ref._obj.value = self.NAMES[code][0]
        return 0

    def cuGetErrorString(self, code, ref):
        ref._obj.value = self.NAMES[code][1]
        return 0


def no_ctranslate2_device(monkeypatch, libcuda, nvml_gpus=1):
    monkeypatch.setattr(cuda, "cuda_device_count", lambda: 0)
    monkeypatch.setattr(models, "cuda_device_count", lambda: 0)
    if isinstance(libcuda, Exception):
        def fail():
            raise libcuda
        monkeypatch.setattr(cuda, "_open_libcuda", fail)
    else:
        monkeypatch.setattr(cuda, "_open_libcuda", lambda: libcuda)
    import whisperkit.measure.nvml as nvml

    monkeypatch.setattr(nvml, "gpu_inventory", lambda: ([{"index": i} for i in range(nvml_gpus)], None))


def test_no_cuda_device_although_nvml_lists_a_gpu_names_the_drivers_error(monkeypatch):
    no_ctranslate2_device(monkeypatch, FakeLibcuda(init_code=999))
    choice = models.device_choice("auto")
    assert choice.device == "cpu"
    assert "NVML lists 1 GPU(s)" in choice.reason and "CUDA_ERROR_UNKNOWN (999: unknown error)" in choice.reason
    assert "reboot" in choice.reason and "no NVIDIA GPU" not in choice.reason
    with pytest.raises(wk.DeviceError, match=r"cuInit returned CUDA_ERROR_UNKNOWN") as caught:
        wk.load_model(device="cuda")
    assert "\n" not in str(caught.value)


def test_a_driver_too_old_for_cuda_12_is_named(monkeypatch):
    no_ctranslate2_device(monkeypatch, FakeLibcuda(version=11080))
    reason = cuda.cuda_unusable_reason()
    assert "supports CUDA 11.8 only" in reason and "R525" in reason


def test_cuda_visible_devices_hiding_every_gpu_is_named(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    no_ctranslate2_device(monkeypatch, FakeLibcuda(init_code=100))
    reason = cuda.cuda_unusable_reason()
    assert "CUDA_ERROR_NO_DEVICE (100" in reason and "CUDA_VISIBLE_DEVICES" in reason


def test_without_libcuda_and_without_nvml_gpus_it_is_no_gpu(monkeypatch):
    no_ctranslate2_device(monkeypatch, OSError("libcuda.so.1: cannot open shared object file"), nvml_gpus=0)
    assert cuda.cuda_unusable_reason() == cuda.NO_GPU_REASON
    no_ctranslate2_device(monkeypatch, OSError("libcuda.so.1: cannot open shared object file"), nvml_gpus=2)
    reason = cuda.cuda_unusable_reason()
    assert reason.startswith("NVML lists 2 GPU(s), but the CUDA driver library cannot be loaded") and "--gpus all" in reason


def test_the_real_driver_status_answers_without_raising():
    status = cuda.driver_status()
    assert (status.load_error is None) == (status.init_code is not None)
    assert isinstance(cuda.no_device_reason(0), str)


class FakeInner:
    """The ctranslate2 Whisper model a WhisperModel holds, as far as whisperkit reads it."""

    def __init__(self, device):
        self.device, self.device_index, self.compute_type, self.num_workers = device, [0], "int8_float16", 1


class FakeWhisperModel:
    def __init__(self, device):
        self.model = FakeInner(device)

    def transcribe(self, *args, **kwargs):
        raise AssertionError("not reached")


def test_a_user_loaded_gpu_model_gets_the_library_preload_first(monkeypatch):
    asked = []
    found = cuda.CudaLibraries(("libcublas.so.12",), {"libcublas.so.12": "/site-packages/nvidia/cublas/lib/libcublas.so.12"})
    monkeypatch.setattr(models, "cuda_libraries", lambda: asked.append(1) or found)
    wrapped = models.wrap_whisper_model(FakeWhisperModel("cuda"))
    assert asked and (wrapped.device, wrapped.compute_type, wrapped.device_index) == ("cuda", "int8_float16", 0)
    gpu_without_cublas(monkeypatch)
    with pytest.raises(wk.DeviceError) as caught:
        wk.transcribe(wk.sample_path(), model=FakeWhisperModel("cuda"), progress=False)
    message = str(caught.value)
    assert "\n" not in message and "this WhisperModel runs on cuda" in message and "libcublas.so.12" in message
    asked.clear()
    assert models.wrap_whisper_model(FakeWhisperModel("cpu")).device == "cpu"  # no preload for the CPU


def test_ctranslate2s_missing_library_error_becomes_one_line(monkeypatch, model):
    """What ctranslate2 raises at its first matrix product when libcublas.so.12 cannot be opened."""
    from faster_whisper import WhisperModel

    def first_gemm_fails(self, *args, **kwargs):
        raise RuntimeError("Library libcublas.so.12 is not found or cannot be loaded")

    monkeypatch.setattr(WhisperModel, "transcribe", first_gemm_fails)
    with pytest.raises(wk.DeviceError) as caught:
        wk.transcribe(wk.sample_path(), model=model, mode="sequential", progress=False)
    message = str(caught.value)
    assert "\n" not in message and "cannot load libcublas.so.12 (CUDA 12 cuBLAS)" in message
    assert "pip install 'whisperkit[gpu]'" in message
    assert cuda.is_cuda_error(RuntimeError("Cannot load symbol cublasGemmEx from library libcublas.so.12"))
    assert "lacks cublasGemmEx" in cuda.cuda_error_advice(RuntimeError("Cannot load symbol cublasGemmEx from library libcublas.so.12"))


def test_pyproject_allows_only_ctranslate2_wheels_without_cudnn_and_installs_no_cudnn():
    """ctranslate2 4.5 to 4.6.2 wheels load cuDNN's sub-libraries, which whisperkit does not preload."""
    import re
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    ctranslate2 = next(dep for dep in project["dependencies"] if dep.startswith("ctranslate2"))
    floor = tuple(int(part) for part in re.search(r">=([\d.]+)", ctranslate2).group(1).split("."))
    assert floor >= (4, 6, 3), ctranslate2
    assert not any("cudnn" in dep for dep in project["optional-dependencies"]["gpu"])
    assert any(dep.startswith("nvidia-cublas-cu12") for dep in project["optional-dependencies"]["gpu"])
    assert not any(name.startswith("libcudnn") for name in cuda.needed_libraries())  # the installed wheel
