"""Result records of experiments: a monitored Run, a before/after Comparison, a batch-size Sweep.

They hold data and compute nothing heavy; metrics come from :mod:`whisperkit.experiments.metrics`,
their tables' values from :mod:`whisperkit.experiments.tables` (the ``.table()`` methods are those
values as DataFrames), saving and loading from :mod:`whisperkit.experiments.store`, figures and
reports from ``views``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from whisperkit.checks import is_missing
from whisperkit.core.config import Config
from whisperkit.core.transcription import Transcript
from whisperkit.experiments.metrics import side_summary
from whisperkit.experiments.tables import (
    BATCH_SIZE,
    NO_GPU,
    NOT_MEASURED,
    SWEEP_METRICS,
    missing_text,
    repeat_walls,
    shown_value,
    sweep_header,
    sweep_values,
    table_values,
)
from whisperkit.experiments.verdicts import comparison_verdict, sweep_tied, sweep_verdict
from whisperkit.measure.utilization import Utilization

if TYPE_CHECKING:
    import pandas as pd

# the tables' names, once defined in this module (whisperkit.experiments.tables builds the tables now)
__all__ = ["NO_GPU", "NOT_MEASURED", "SWEEP_METRICS", "Comparison", "Run", "Sweep", "SweepPoint", "missing_text",
           "shown_value", "table_values"]


@dataclass
class Run:
    """One monitored transcription: what was asked, on what machine, what happened.

    ``metrics`` (units in the names) are computed over the transcription phases, not the
    model load: ``rtfx``, ``wall_seconds``, ``load_seconds``, ``audio_seconds``,
    ``mean_cpu_percent`` (system, 0-100), ``mean_process_cpu_percent`` (this process, share of
    all cores, 0-100), ``mean_gpu_util_percent`` (busiest GPU, None without GPU),
    ``peak_rss_mb`` (the whole process, so it includes whatever was loaded before the run),
    ``rss_growth_mb`` (peak minus the first sample: what the run itself added, model load
    included), ``peak_gpu_mem_mb`` (None without GPU), ``wer_vs_reference`` (None without).
    ``wer_by_channel``: a transcript split by channel, each channel's WER against the
    ``X.<channel>.txt`` beside the audio (:func:`whisperkit.core.accuracy.wer_by_channel`); empty without.
    ``utilization`` is what the sampler recorded over the whole run, model load included
    (``run.timeline`` and ``run.marks`` are its two tables).
    """

    config: Config
    transcript: Transcript
    environment: dict
    utilization: Utilization
    metrics: dict
    started_at: str = ""
    reference: str | None = None
    gpu_unavailable_reason: str | None = None
    corpus: Any = None  # CorpusResult of a Config(mode="corpus") run: stages, spans, each file's transcript
    wer_by_channel: dict = field(default_factory=dict)  # channel name -> WER (fraction)

    @property
    def timeline(self) -> pd.DataFrame:
        """The utilization samples, one row per sample (``utilization.timeline``)."""
        return self.utilization.timeline

    @property
    def marks(self) -> pd.DataFrame:
        """The phase marks, ``time_s`` and ``label`` (``utilization.marks``)."""
        return self.utilization.marks

    @property
    def label(self) -> str:
        if self.config.label:
            return self.config.label
        batch = self.transcript.config.get("batch_size")
        if self.config.mode == "corpus":
            return f"corpus, {'packed' if self.config.pack else 'not packed'}, batch {batch}"
        if self.config.mode == "sequential":  # no batch: its workers tell sequential runs apart
            workers = self.config.num_workers
            return "sequential" + (f", num_workers={workers}" if workers != 1 else "")
        return f"{self.config.mode}, batch {batch}"

    def table(self) -> pd.DataFrame:
        """The metrics under readable names, one column (pandas DataFrame of
        :func:`~whisperkit.experiments.tables.table_values`)."""
        import pandas as pd

        return pd.DataFrame({"value": table_values(self)})


@dataclass
class Comparison:
    """Two configurations on the same audio: ``before`` and ``after`` (median-wall runs).

    ``speedup`` is the median before wall time over the median after wall time;
    ``wer_between`` the word error rate of the after text against the before text;
    ``wer_vs_reference`` per side against the reference, or None without one;
    ``differences`` every setting, decoding included, that differs between the sides, and their
    segmentation (chunk count and boundaries) where it differs; ``matched`` means the sequential
    side decoded the batched side's chunks with its decoding settings.
    """

    before: Run
    after: Run
    before_runs: list[Run]
    after_runs: list[Run]
    speedup: float
    wer_between: float
    wer_vs_reference: dict | None
    differences: list[dict]
    matched: bool = False

    @property
    def verdict(self) -> str:
        """The speedup in words, never crowning a side its repeats do not separate:
        ``"after is 1.88x faster (wall ...)"``, ``"no difference within noise (...)"``, or with one
        run per side ``"after is 1.12x faster (a single run each: quick mode, noise not measured)"``
        (see :mod:`whisperkit.experiments.verdicts`)."""
        return comparison_verdict(self)

    def to_dict(self) -> dict:
        """The content of ``comparison.json``."""
        return {
            "audio": self.before.transcript.audio_path,
            "audio_seconds": self.before.transcript.audio_seconds,
            "matched": self.matched,
            "before": side_summary(self.before, [r.transcript.wall_seconds for r in self.before_runs]),
            "after": side_summary(self.after, [r.transcript.wall_seconds for r in self.after_runs]),
            "speedup": self.speedup,
            "verdict": self.verdict,
            "wer_between": self.wer_between,
            "wer_vs_reference": self.wer_vs_reference,
            "differences": self.differences,
            "environment": self.after.environment,
        }

    def table(self) -> pd.DataFrame:
        """Before and after side by side (pandas DataFrame), for notebooks and the CLI."""
        import pandas as pd

        return pd.DataFrame({
            name: {**table_values(run_), "wall s of each repeat": repeat_walls(runs), "text": run_.transcript.text[:60] + "..."}
            for name, run_, runs in (("before", self.before, self.before_runs), ("after", self.after, self.after_runs))
        })


@dataclass
class SweepPoint:
    """One batch size of a sweep; ``oom`` is True where it ran out of memory (then retried smaller)."""

    batch_size: int
    rtfx: float
    wall_seconds: float
    peak_rss_mb: float
    peak_gpu_mem_mb: float | None
    mean_cpu_percent: float
    mean_gpu_util_percent: float | None
    oom: bool = False


@dataclass
class Sweep:
    """Throughput and memory against batch size.

    ``points`` hold each batch size's median run; ``repeat_rtfx`` the RTFx of every repeat per
    batch size (one value each in a single-run sweep and in :func:`whisperkit.autotune`).
    ``runs`` holds the median run of each batch size that completed: a batch size that ran out of
    memory even after halving down to 1 has a point (``oom=True``) but no run.
    ``fastest`` is the batch size with the highest median RTFx; ``best`` the smallest batch size
    the sweep cannot tell from it (repeats overlapping, or every chunk already in one batch), which
    is ``fastest`` where it stands out; ``verdict`` says which, in words.
    """

    points: list[SweepPoint]
    runs: list[Run] = field(default_factory=list)
    stopped_because: str = ""
    repeat_rtfx: dict[int, list[float]] = field(default_factory=dict)

    @property
    def fastest(self) -> int | None:
        fitting = [p for p in self.points if not p.oom and not is_missing(p.rtfx)]
        return max(fitting, key=lambda p: p.rtfx).batch_size if fitting else None

    @property
    def best(self) -> int | None:
        tied = sweep_tied(self)
        return tied[0] if tied else None

    @property
    def tied(self) -> list[int]:
        """The batch sizes the sweep cannot tell from the fastest, smallest first."""
        return sweep_tied(self)

    @property
    def verdict(self) -> str:
        """What the sweep found, in one sentence that crowns no batch size its repeats do not separate."""
        return sweep_verdict(self)

    def to_dict(self) -> dict:
        """The content of ``sweep.json``."""
        from dataclasses import asdict

        first = self.runs[0] if self.runs else None
        return {
            "audio": first.transcript.audio_path if first else None,
            "audio_seconds": first.transcript.audio_seconds if first else None,
            "config": first.config.to_dict() if first else None,
            "points": [asdict(point) for point in self.points],
            "best": self.best,
            "fastest": self.fastest,
            "verdict": self.verdict,
            "repeat_rtfx": {str(size): values for size, values in self.repeat_rtfx.items()},
            "stopped_because": self.stopped_because,
            "environment": first.environment if first else None,
        }

    def table(self) -> pd.DataFrame:
        """One row per batch size (pandas DataFrame of :func:`~whisperkit.experiments.tables.sweep_values`):
        under the registry's labels, values rounded to its digits; with repeats, the lowest and
        highest RTFx beside the median; a GPU reading of a run without a GPU reads ``n/a (no GPU)``."""
        import pandas as pd

        rows = sweep_values(self)
        return pd.DataFrame(rows, columns=sweep_header(self)).set_index(BATCH_SIZE)
