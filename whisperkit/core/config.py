"""The settings of one transcription run, checked once, in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from whisperkit.checks import is_whole
from whisperkit.errors import ConfigError

MODES = ("batched", "sequential")


@dataclass(frozen=True)
class Config:
    """How to transcribe: the model, where it runs, and how it decodes.

    ``mode="batched"`` is ``BatchedInferencePipeline(model).transcribe(batch_size=...)``;
    ``mode="sequential"`` is ``WhisperModel.transcribe`` (``batch_size`` is then unused).
    ``batch_size="auto"`` asks :func:`whisperkit.recommend_batch_size` for one.
    ``options`` are further keyword arguments for faster-whisper's ``transcribe``
    (``vad_filter``, ``without_timestamps``, ``temperature``, ...).

    >>> Config(mode="sequential", num_workers=24).mode
    'sequential'
    """

    model: str | None = None
    device: str = "auto"
    compute_type: str = "auto"
    mode: str = "batched"
    batch_size: int | str = 8
    num_workers: int = 1
    cpu_threads: int = 0
    beam_size: int = 5
    language: str | None = None
    options: dict = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; expected one of: {', '.join(MODES)}")
        if self.batch_size != "auto" and not is_whole(self.batch_size, 1):
            raise ConfigError(f"batch size must be a whole number of at least 1 or 'auto', got {self.batch_size!r}")
        if not is_whole(self.beam_size, 1):
            raise ConfigError(f"beam size must be a whole number of at least 1, got {self.beam_size!r}")
        if not is_whole(self.num_workers, 1):
            raise ConfigError(f"num_workers must be a whole number of at least 1, got {self.num_workers!r}")
        if not is_whole(self.cpu_threads, 0):
            raise ConfigError(f"cpu_threads must be a whole number of at least 0, got {self.cpu_threads!r}")
        reserved = {"batch_size", "beam_size", "language"} & set(self.options)
        if reserved:
            raise ConfigError(f"give {', '.join(sorted(reserved))} as Config fields, not in options")

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain values, for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**values)


# Decoding settings a comparison shows, in this order.
DECODING_SETTINGS = (
    "vad_filter",
    "without_timestamps",
    "condition_on_previous_text",
    "temperature",
    "compression_ratio_threshold",
    "log_prob_threshold",
    "no_speech_threshold",
)
IGNORED_IN_BATCHED = ("compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold")


def decoding_settings(config: Config) -> dict:
    """The decoding settings as they take effect in faster-whisper 1.2 for ``config``.

    Batched mode defaults to ``vad_filter=True`` and ``without_timestamps=True`` (sequential:
    both False), always decodes without the previous text as prompt, uses only the first
    temperature (no fallback) and ignores the three thresholds; this says so.
    """
    import inspect

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    function = BatchedInferencePipeline.transcribe if config.mode == "batched" else WhisperModel.transcribe
    parameters = inspect.signature(function).parameters
    settings = {name: parameters[name].default for name in DECODING_SETTINGS}
    settings.update({k: v for k, v in config.options.items() if k in settings})
    temperatures = settings["temperature"]
    if not isinstance(temperatures, (list, tuple)):
        temperatures = [temperatures]
    if config.mode == "batched":
        settings["condition_on_previous_text"] = False
        settings["temperature"] = f"{temperatures[0]} (no fallback)"
        for name in IGNORED_IN_BATCHED:
            settings[name] = "ignored"
    else:
        settings["temperature"] = (
            f"{temperatures[0]} (no fallback)" if len(temperatures) == 1
            else f"{', '.join(str(t) for t in temperatures)} (fallback)"
        )
    return {"beam_size": config.beam_size, "language": config.language or "detect", **settings}


def matched_options(batched: Config) -> dict:
    """Options that make a sequential run decode as ``batched`` does, to isolate batching itself."""
    effective = decoding_settings(batched.replace(mode="batched"))
    temperature = batched.options.get("temperature", 0.0)
    first = temperature[0] if isinstance(temperature, (list, tuple)) else temperature
    return {
        "vad_filter": effective["vad_filter"],
        "without_timestamps": effective["without_timestamps"],
        "condition_on_previous_text": False,
        "temperature": first,
        "compression_ratio_threshold": None,
        "log_prob_threshold": None,
        "no_speech_threshold": None,
    }
