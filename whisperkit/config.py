"""The settings of one transcription run, checked once, in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

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
        if self.batch_size != "auto" and not _whole_at_least(self.batch_size, 1):
            raise ConfigError(f"batch size must be a whole number of at least 1 or 'auto', got {self.batch_size!r}")
        if not _whole_at_least(self.beam_size, 1):
            raise ConfigError(f"beam size must be a whole number of at least 1, got {self.beam_size!r}")
        if not _whole_at_least(self.num_workers, 1):
            raise ConfigError(f"num_workers must be a whole number of at least 1, got {self.num_workers!r}")
        if not _whole_at_least(self.cpu_threads, 0):
            raise ConfigError(f"cpu_threads must be a whole number of at least 0, got {self.cpu_threads!r}")
        reserved = {"batch_size", "beam_size", "language"} & set(self.options)
        if reserved:
            raise ConfigError(f"give {', '.join(sorted(reserved))} as Config fields, not in options")

    def replace(self, **changes) -> "Config":
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain values, for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**values)


def _whole_at_least(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
