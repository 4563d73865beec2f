"""whisperkit: see, measure and teach how Whisper transcription uses a GPU.

>>> import whisperkit as wk
>>> t = wk.transcribe(wk.sample_path(), mode="batched", batch_size=8)   # doctest: +SKIP

Names are imported on first use, so ``import whisperkit`` stays fast.
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "WhisperkitError": "errors",
    "AudioError": "errors",
    "ModelError": "errors",
    "DeviceError": "errors",
    "ConfigError": "errors",
    "RunError": "errors",
    "Config": "config",
    "Model": "models",
    "load_model": "models",
    "load_audio": "audio",
    "Transcript": "transcribe",
    "Segment": "transcribe",
    "transcribe": "transcribe",
    "sample_path": "samples",
    "list_samples": "samples",
    "word_error_rate": "accuracy",
    "collect_environment": "environment",
    "Sampler": "monitor",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"whisperkit.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'whisperkit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
