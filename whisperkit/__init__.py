"""whisperkit: see, measure and teach how Whisper transcription uses a GPU.

>>> import whisperkit as wk
>>> t = wk.transcribe(wk.sample_path(), mode="batched", batch_size=8)   # doctest: +SKIP

Names are imported on first use, so ``import whisperkit`` stays fast.
"""

import importlib

from whisperkit._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "WhisperkitError": "errors",
    "AudioError": "errors",
    "ModelError": "errors",
    "DeviceError": "errors",
    "OutOfMemoryError": "errors",
    "ConfigError": "errors",
    "RunError": "errors",
    "ClusterError": "errors",
    "Config": "core.config",
    "Settings": "core.config",
    "Model": "core.models",
    "load_model": "core.models",
    "load_audio": "core.audio",
    "audio_from_array": "core.audio",
    "Transcript": "core.transcription",
    "Segment": "core.transcription",
    "transcribe": "core.transcription",
    "sample_path": "core.samples",
    "list_samples": "core.samples",
    "word_error_rate": "core.accuracy",
    "collect_environment": "measure.environment",
    "model_gpu": "measure.devices",
    "cuda_libraries": "measure.cuda",
    "Sampler": "measure.sampler",
    "Utilization": "measure.utilization",
    "Run": "experiments.results",
    "Comparison": "experiments.results",
    "Sweep": "experiments.results",
    "SEED_BEFORE": "experiments.runners",
    "SEED_AFTER": "experiments.runners",
    "run": "experiments.runners",
    "compare": "experiments.runners",
    "sweep": "experiments.runners",
    "autotune": "experiments.runners",
    "recommend_batch_size": "core.batching",
    "save": "experiments.store",
    "load_run": "experiments.store",
    "load_runs": "experiments.store",
    "report": "views.report",
    "app": "views.app",
    "transcribe_clips": "core.clips",
    "transcribe_corpus": "core.corpus.transcribe",
    "CorpusResult": "core.corpus.transcribe",
    "diagnose": "experiments.diagnose",
    "Finding": "experiments.diagnose",
}
# submodules reachable as attributes, e.g. wk.plots.timeline(...)
_SUBMODULES = {
    "plots": "views.plots",
    "runners": "experiments.runners",
    "metrics": "experiments.metrics",
    "batching": "core.batching",
    "monitor": "measure.sampler",
    "samples": "core.samples",
    "store": "experiments.store",
    "widgets": "views.app",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"whisperkit.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"whisperkit.{_SUBMODULES[name]}")
    raise AttributeError(f"module 'whisperkit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
