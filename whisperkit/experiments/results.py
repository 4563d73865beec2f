"""Result records of experiments: a monitored Run, a before/after Comparison, a batch-size Sweep.

They hold data and compute nothing heavy; metrics come from :mod:`whisperkit.experiments.metrics`,
saving and loading from :mod:`whisperkit.experiments.store`, figures and reports from ``views``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from whisperkit.checks import is_missing
from whisperkit.core.config import Config
from whisperkit.core.transcription import Transcript
from whisperkit.experiments.metrics import display_metrics, side_summary

if TYPE_CHECKING:
    import pandas as pd


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
    """

    config: Config
    transcript: Transcript
    environment: dict
    timeline: Any  # pandas.DataFrame, one row per sample
    marks: Any  # pandas.DataFrame: time_s, label
    metrics: dict
    started_at: str = ""
    reference: str | None = None
    gpu_unavailable_reason: str | None = None
    corpus: Any = None  # CorpusResult of a Config(mode="corpus") run: stages, spans, each file's transcript
    wer_by_channel: dict = field(default_factory=dict)  # channel name -> WER (fraction)

    @property
    def label(self) -> str:
        if self.config.label:
            return self.config.label
        batch = self.transcript.config.get("batch_size")
        if self.config.mode == "corpus":
            return f"corpus, {'packed' if self.config.pack else 'not packed'}, batch {batch}"
        return f"{self.config.mode}, batch {batch}"

    def table(self) -> pd.DataFrame:
        """The metrics under readable names, one column (pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame({"value": display_metrics(self)})


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
        """The speedup in words: ``"after is 1.88x faster"`` (or slower, or unknown)."""
        if is_missing(self.speedup):
            return "speedup unknown"
        if self.speedup >= 1:
            return f"after is {self.speedup:.2f}x faster"
        return f"after is {1 / self.speedup:.2f}x slower"

    def to_dict(self) -> dict:
        """The content of ``comparison.json``."""
        return {
            "audio": self.before.transcript.audio_path,
            "audio_seconds": self.before.transcript.audio_seconds,
            "matched": self.matched,
            "before": side_summary(self.before, [r.transcript.wall_seconds for r in self.before_runs]),
            "after": side_summary(self.after, [r.transcript.wall_seconds for r in self.after_runs]),
            "speedup": self.speedup,
            "wer_between": self.wer_between,
            "wer_vs_reference": self.wer_vs_reference,
            "differences": self.differences,
            "environment": self.after.environment,
        }

    def table(self) -> pd.DataFrame:
        """Before and after side by side (pandas DataFrame), for notebooks and the CLI."""
        import pandas as pd

        return pd.DataFrame({
            name: {**display_metrics(run_), "text": run_.transcript.text[:60] + "..."}
            for name, run_ in (("before", self.before), ("after", self.after))
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
    """Throughput and memory against batch size; ``best`` is the fastest batch size that fit.

    ``runs`` holds the runs that completed: a batch size that ran out of memory even after
    halving down to 1 has a point (``oom=True``) but no run.
    """

    points: list[SweepPoint]
    runs: list[Run] = field(default_factory=list)
    stopped_because: str = ""

    @property
    def best(self) -> int | None:
        fitting = [p for p in self.points if not p.oom and not is_missing(p.rtfx)]
        return max(fitting, key=lambda p: p.rtfx).batch_size if fitting else None

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
            "stopped_because": self.stopped_because,
            "environment": first.environment if first else None,
        }

    def table(self) -> pd.DataFrame:
        """One row per batch size (pandas DataFrame)."""
        from dataclasses import asdict

        import pandas as pd

        return pd.DataFrame([asdict(point) for point in self.points]).set_index("batch_size")
