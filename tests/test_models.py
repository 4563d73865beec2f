"""Finding models and choosing device and compute type."""

from __future__ import annotations

import time

import pytest

import whisperkit as wk
from whisperkit.core import models


def test_default_is_the_bundled_tiny_en_on_cpu_int8(model):
    assert model.name == "tiny.en"
    assert model.path == models.bundled_model_path()
    assert (model.device, model.compute_type) == ("cpu", "int8")
    assert model.whisper.model.device == "cpu"


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


def test_named_model_not_cached_offline_says_what_to_do():
    started = time.monotonic()
    with pytest.raises(wk.ModelError, match=r"'small' is not in the local cache and could not be downloaded.*local CTranslate2 folder"):
        wk.load_model("small")
    assert time.monotonic() - started < 60


def test_missing_folder_and_folder_without_weights(tmp_path):
    with pytest.raises(wk.ModelError, match="does not exist"):
        wk.load_model(str(tmp_path / "nowhere"))
    with pytest.raises(wk.ModelError, match="has no model.bin"):
        wk.load_model(str(tmp_path))


def test_cuda_where_none_is_visible_is_a_device_error():
    assert models.cuda_device_count() == 0  # no machine of this project has a GPU
    with pytest.raises(wk.DeviceError, match="device cuda was asked for.*no CUDA device.*use device cpu or auto"):
        wk.load_model(device="cuda")


def test_unsupported_compute_type_lists_supported_ones():
    with pytest.raises(wk.DeviceError, match=r"'float16' is not supported on cpu; supported here: .*int8"):
        wk.load_model(compute_type="float16")


def test_unknown_device_and_bad_worker_counts():
    with pytest.raises(wk.ConfigError, match="unknown device 'tpu'"):
        wk.load_model(device="tpu")
    with pytest.raises(wk.ConfigError, match="num_workers"):
        wk.load_model(num_workers=0)
    with pytest.raises(wk.ConfigError, match="cpu_threads"):
        wk.load_model(cpu_threads=-1)


def test_auto_picks_cuda_and_float16_where_ctranslate2_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(models, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(models, "supported_compute_types",
                        lambda device: {"float16", "int8_float16", "int8", "float32"} if device == "cuda" else {"int8", "float32"})
    assert models.pick_device("auto") == "cuda"
    assert models.pick_compute_type("cuda", "auto") == "float16"
    assert models.pick_compute_type("cpu", "auto") == "int8"


def test_auto_on_a_gpu_without_float16_falls_back(monkeypatch):
    monkeypatch.setattr(models, "supported_compute_types", lambda device: {"int8", "float32"})
    assert models.pick_compute_type("cuda", "auto") == "float32"


def test_num_workers_sets_ctranslate2_workers(model):
    workers = wk.load_model(num_workers=2)
    assert workers.whisper.model.num_workers == 2
    assert workers.describe()["num_workers"] == 2
