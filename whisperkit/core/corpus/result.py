"""What a corpus run did: :class:`CorpusResult`, with its tables (built in
:mod:`whisperkit.core.corpus.tables`) and its plain-JSON form."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from whisperkit.checks import is_missing
from whisperkit.core.config import Settings
from whisperkit.core.corpus.engines.base import Span, StageStats, WorkerTimeline
from whisperkit.core.corpus.tables import STAGE_COLUMNS, WORKER_COLUMNS, as_frame, stage_rows, worker_rows
from whisperkit.core.transcription import Transcript
from whisperkit.measure.utilization import HoldsUtilization, Utilization

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class CorpusResult(HoldsUtilization):
    """What a corpus run did.

    ``transcripts`` maps each transcribed path to its :class:`Transcript` (segment times relative
    to that file; ``wall_seconds`` from the start of the run to the file's completion);
    ``failures`` maps a path to the reason it failed (one line); ``skipped`` lists paths a
    previous run had done (resume). ``batch_retries`` lists each out-of-memory halving
    (``retry_seconds`` spent in the batches that failed). ``audio_seconds`` and ``wall_seconds`` cover this run's
    files (model loading excluded, ``load_seconds``). ``stages`` holds each stage's busy and wait
    seconds; ``windows`` the model's windows (``unpacked_windows`` of them decoded again one clip
    per window because the model skipped a clip of a packed window); ``model_wait_seconds`` is
    how long the model waited for its next batch, the corpus
    version of "was the GPU idle?". ``spans`` are the stages' pieces of work in seconds since the
    start; with ``monitor=True``, ``utilization`` holds the samples (its ``timeline`` and
    ``marks``, also read as ``result.timeline`` and ``result.marks``), on the same clock as
    ``spans``. ``config`` is the run's settings, a frozen snapshot with ``batch_size`` the one the
    run settled on (halved for good on out-of-memory); each file's transcript has its own, with
    the batch size that decoded it (a file done before a halving keeps the larger one).
    """

    transcripts: dict[str, Transcript]
    failures: dict[str, str]
    skipped: list[str]
    audio_seconds: float
    wall_seconds: float
    batch_size: int
    pack: bool
    config: Settings
    stages: dict[str, StageStats] = field(default_factory=dict)
    windows: int = 0
    pieces: int = 0
    unpacked_windows: int = 0
    load_seconds: float = 0.0
    batch_retries: list[dict] = field(default_factory=list)
    retry_seconds: float = 0.0
    output_dir: str | None = None
    spans: list[Span] = field(default_factory=list)
    utilization: Utilization | None = None  # with monitor=True
    engine: str = "local"
    worker_timelines: list[WorkerTimeline] = field(default_factory=list)  # engine="ray": one per model worker
    engine_info: dict = field(default_factory=dict)  # engine="ray": cluster, actors, restarts, duplicates dropped
    first_batch_seconds: float = float("nan")

    def __post_init__(self) -> None:
        if not isinstance(self.config, Settings):  # a plain dict (JSON, a caller): its own frozen copy
            self.config = Settings(self.config)

    @property
    def workers(self) -> list[WorkerTimeline]:
        """Deprecated name of :attr:`worker_timelines` (one per model worker)."""
        warnings.warn("CorpusResult.workers is now CorpusResult.worker_timelines ('workers' is deprecated and goes "
                      "in the next release)", DeprecationWarning, stacklevel=2)
        return self.worker_timelines

    @property
    def rtfx(self) -> float:
        """Seconds of audio transcribed per wall-clock second (higher is faster)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    @property
    def model_wait_seconds(self) -> float:
        """Seconds the model waited for input (its first batch included)."""
        stats = self.stages.get("model")
        return stats.wait_seconds if stats else 0.0

    @property
    def model_wait_percent(self) -> float:
        """The model's wait as a percent of the run's wall time (per model worker, where there are several)."""
        stats = self.stages.get("model")
        workers = max(1, stats.threads) if stats else 1
        return 100.0 * self.model_wait_seconds / workers / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def as_transcript(self, audio_path: str | None = None) -> Transcript:
        """The whole run as one :class:`Transcript`: what :func:`whisperkit.run` records as a corpus
        run's ``Run.transcript``, so a corpus run has the metrics, tables and plots of any run.

        Its ``text`` is every file's text in file order and its ``segments`` every file's segments
        in that order, each with its own file's times (they are not on one clock: read a file's
        segments in ``transcripts``). ``audio_seconds``, ``wall_seconds``, ``load_seconds``,
        ``retry_seconds``, ``batch_retries`` and ``config`` are the run's; ``prepare_seconds`` is
        the time before the model's first batch, ``decode_seconds`` the rest of the run less the
        retries (so prepare + decode + retry = wall); ``chunks`` the windows the model decoded;
        ``warnings`` each file's warnings and each failure, after the file's path; ``utilization``
        the run's. ``audio_path`` names the sources (``"a.flac, b.flac"``)."""
        files = list(self.transcripts.values())
        prepare = 0.0 if is_missing(self.first_batch_seconds) else min(self.first_batch_seconds, self.wall_seconds)
        return Transcript(
            segments=[segment for transcript in files for segment in transcript.segments],
            language=files[0].language if files else None,
            audio_seconds=self.audio_seconds,
            wall_seconds=self.wall_seconds,
            prepare_seconds=prepare,
            decode_seconds=self.wall_seconds - prepare - self.retry_seconds,
            load_seconds=self.load_seconds,
            retry_seconds=self.retry_seconds,
            config=self.config,
            audio_path=audio_path,
            warnings=[f"{path}: {warning}" for path, t in self.transcripts.items() for warning in t.warnings]
            + [f"{path}: {reason}" for path, reason in self.failures.items()],
            batch_retries=list(self.batch_retries),
            chunks=self.windows,
            utilization=self.utilization,
        )

    def stage_table(self) -> pd.DataFrame:
        """pandas DataFrame, one row per stage: threads, items, busy and wait seconds, busy percent
        of the run (over 100 % for a pool of threads working at once); the rows of
        :func:`whisperkit.core.corpus.tables.stage_rows`, which the report and the app show too."""
        return as_frame(stage_rows(self.stages, self.wall_seconds), STAGE_COLUMNS)

    def worker_table(self) -> pd.DataFrame:
        """engine "ray": pandas DataFrame, one row per model worker (actor life): where it ran,
        batches, windows, audio, busy, wait and load seconds, busy percent of the run (the rows of
        :func:`whisperkit.core.corpus.tables.worker_rows`)."""
        return as_frame(worker_rows(self.worker_timelines, self.wall_seconds), WORKER_COLUMNS)

    def summary(self) -> str:
        """One line: files, audio, speed, model wait."""
        if not self.audio_seconds:
            return (f"nothing transcribed: {len(self.failures)} file(s) failed, "
                    f"{len(self.skipped)} skipped (done before)")
        return (f"{len(self.transcripts)} file(s) done, {len(self.failures)} failed, {len(self.skipped)} skipped; "
                f"{self.audio_seconds / 3600:.2f} h of audio in {self.wall_seconds:.1f} s "
                f"({self.rtfx:.1f}x real time); the model waited {self.model_wait_percent:.0f} % of the run")

    def to_dict(self) -> dict:
        """Plain values for JSON: everything but the utilization samples (``utilization``) and engine
        "ray"'s per-worker timelines (``worker_timelines``)."""
        values = {name: getattr(self, name) for name in _PLAIN_FIELDS}
        values["config"] = self.config.to_dict()
        return {
            **values,
            "transcripts": {path: transcript.to_dict() for path, transcript in self.transcripts.items()},
            "stages": {name: asdict(stats) for name, stats in self.stages.items()},
            "spans": [asdict(span) for span in self.spans],
        }

    @classmethod
    def from_dict(cls, data: dict) -> CorpusResult:
        """The inverse of :meth:`to_dict`."""
        plain = {name: data[name] for name in _PLAIN_FIELDS if name in data}
        if plain.get("first_batch_seconds") is None:  # NaN (no batch ran) is saved as null
            plain.pop("first_batch_seconds", None)
        return cls(
            **plain,
            transcripts={path: Transcript.from_dict(t) for path, t in data["transcripts"].items()},
            stages={name: StageStats(**stats) for name, stats in data.get("stages", {}).items()},
            spans=[Span(**span) for span in data.get("spans", [])],
        )


# CorpusResult's fields that are plain JSON values as they are
_PLAIN_FIELDS = ("failures", "skipped", "audio_seconds", "wall_seconds", "batch_size", "pack", "config", "windows",
                 "pieces", "unpacked_windows", "load_seconds", "batch_retries", "retry_seconds", "output_dir",
                 "engine", "engine_info", "first_batch_seconds")
