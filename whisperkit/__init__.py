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
    "Transcript": "transcription",
    "Segment": "transcription",
    "transcribe": "transcription",
    "sample_path": "samples",
    "list_samples": "samples",
    "word_error_rate": "accuracy",
    "collect_environment": "environment",
    "Sampler": "monitor",
    "Run": "experiment",
    "Comparison": "experiment",
    "Sweep": "experiment",
    "SEED_BEFORE": "experiment",
    "SEED_AFTER": "experiment",
    "run": "experiment",
    "compare": "experiment",
    "sweep": "experiment",
    "autotune": "experiment",
    "recommend_batch_size": "batching",
    "load_run": "store",
    "load_runs": "store",
    "report": "html_report",
    "app": "widgets",
    "transcribe_clips": "clips",
}
# submodules reachable as attributes, e.g. wk.plots.timeline(...)
_SUBMODULES = ("plots", "experiment", "batching", "monitor", "samples", "store", "widgets")

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"whisperkit.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"whisperkit.{name}")
    raise AttributeError(f"module 'whisperkit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
