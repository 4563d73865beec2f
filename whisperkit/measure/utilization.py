"""What a monitored run's sampler recorded: :class:`Utilization`, one record held by a
:class:`~whisperkit.Transcript` (``monitor=True``), a :class:`~whisperkit.CorpusResult` and a
:class:`~whisperkit.experiments.results.Run`.

>>> t = wk.transcribe("talk.flac", monitor=True)          # doctest: +SKIP
>>> t.utilization.timeline.columns[:3].tolist()           # doctest: +SKIP
['time_s', 'cpu_percent', 'process_cpu_percent']
>>> t.timeline is t.utilization.timeline                  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from whisperkit.measure.sampler import Sampler

MARK_COLUMNS = ["time_s", "label"]


@dataclass(frozen=True)
class Utilization:
    """The samples of one run, on one clock (seconds since the sampler started).

    ``timeline``: pandas DataFrame, one row per sample, ``time_s`` then the columns listed in
    :mod:`whisperkit.measure.sampler` (units in their names, NaN where a reading failed).
    ``marks``: pandas DataFrame of the phase marks, ``time_s`` and ``label`` (``load``,
    ``prepare``, ``decode``, ``retry``, ``first batch``...). ``column_reasons``: column -> why it
    is NaN for the whole run (NotSupported, no GPM, ...). ``process_gpu_unavailable_reason``: why
    ``gpu{i}_process_*`` are NaN (the PIDs cannot be matched to NVML's); None where they could be.
    """

    timeline: pd.DataFrame
    marks: pd.DataFrame
    column_reasons: dict[str, str] = field(default_factory=dict)
    process_gpu_unavailable_reason: str | None = None

    @classmethod
    def of(cls, sampler: Sampler) -> Utilization:
        """What ``sampler`` recorded so far (a copy: later samples do not change it)."""
        return cls(sampler.timeline, sampler.marks, dict(sampler.column_reasons), sampler.process_gpu_unavailable_reason)

    @classmethod
    def empty(cls) -> Utilization:
        """No samples and no marks (a run that was not sampled, or a record built by hand)."""
        import pandas as pd

        return cls(pd.DataFrame({"time_s": pd.Series(dtype=float)}), pd.DataFrame(columns=MARK_COLUMNS))

    def to_dict(self) -> dict:
        """The plain-JSON part (the marks and the reasons; the timeline is written as Parquet)."""
        return {"marks": [{"time_s": float(t), "label": str(label)}
                          for t, label in zip(self.marks["time_s"], self.marks["label"])],
                "column_reasons": dict(self.column_reasons),
                "process_gpu_unavailable_reason": self.process_gpu_unavailable_reason}

    @classmethod
    def from_dict(cls, timeline: pd.DataFrame, data: dict) -> Utilization:
        """The inverse of :meth:`to_dict`, with the ``timeline`` read beside it."""
        import pandas as pd

        return cls(timeline, pd.DataFrame(data.get("marks") or [], columns=MARK_COLUMNS),
                   dict(data.get("column_reasons") or {}), data.get("process_gpu_unavailable_reason"))


class HoldsUtilization:
    """``timeline`` and ``marks`` of a result that holds one :class:`Utilization` (or None,
    unmonitored) as its ``utilization`` field: Transcript and CorpusResult."""

    utilization: Utilization | None

    @property
    def timeline(self) -> pd.DataFrame | None:
        """The utilization samples, one row per sample (``utilization.timeline``); None unmonitored."""
        return None if self.utilization is None else self.utilization.timeline

    @property
    def marks(self) -> pd.DataFrame | None:
        """The phase marks, ``time_s`` and ``label`` (``utilization.marks``); None unmonitored."""
        return None if self.utilization is None else self.utilization.marks
