"""The metrics of a run: each defined once here (key, label, unit, rounding, GPU-only), and computed.

Every table (their values built in :mod:`whisperkit.experiments.tables`), the report, the plots
and the app read :data:`METRICS`; adding a metric means one
entry here and one value in :func:`compute_metrics` (a test keeps the two in step).
Metrics are computed over the transcription phases (``prepare`` onwards), not the model load.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from whisperkit.checks import is_missing
from whisperkit.core.config import Config, decoding_settings
from whisperkit.core.transcription import Transcript


class RunRecord(Protocol):
    """What the metrics read of a run: :class:`whisperkit.experiments.results.Run` has it all
    (named here by shape, so this module does not import the results that import it)."""

    config: Config
    transcript: Transcript
    environment: dict
    metrics: dict
    reference: str | None
    corpus: Any

    @property
    def timeline(self) -> Any: ...
    @property
    def marks(self) -> Any: ...
    @property
    def label(self) -> str: ...


@dataclass(frozen=True)
class Metric:
    """One metric: ``key`` in ``Run.metrics``, a short ``label`` for tables, a longer
    ``description`` for the report, its ``unit`` and the ``digits`` it is shown with."""

    key: str
    label: str
    unit: str
    digits: int
    description: str
    gpu_only: bool = False
    in_summary: bool = True  # written to each side of comparison.json
    corpus_only: bool = False  # measured in mode "corpus" only (shown only there)


METRICS: tuple[Metric, ...] = (
    Metric("rtfx", "RTFx", "x", 2, "RTFx (audio s per wall s)"),
    Metric("audio_seconds", "audio s", "s", 2, "audio s"),
    Metric("wall_seconds", "wall s", "s", 2, "wall s (transcription)"),
    Metric("load_seconds", "load s", "s", 2, "model load s"),
    Metric("prepare_seconds", "prepare s", "s", 2, "prepare s (VAD, features)"),
    Metric("decode_seconds", "decode s", "s", 2, "decode s"),
    Metric("batch_size", "batch size", "", 0, "batch size"),
    Metric("mean_cpu_percent", "CPU % (system)", "%", 1, "mean CPU % (system)"),
    Metric("mean_process_cpu_percent", "CPU % (process)", "%", 1, "mean CPU % (this process)"),
    Metric("mean_gpu_util_percent", "GPU util %", "%", 1, "mean GPU utilization % (the model's GPU; the busiest where not known)",
           gpu_only=True),
    Metric("peak_rss_mb", "peak RSS MiB", "MiB", 0, "peak RSS MiB"),
    Metric("rss_growth_mb", "RSS growth MiB", "MiB", 0, "RSS growth MiB (peak minus first sample)"),
    Metric("peak_gpu_mem_mb", "peak GPU MiB", "MiB", 0, "peak GPU memory MiB (the model's GPU; the largest where not known)",
           gpu_only=True),
    Metric("gpu_energy_j_per_audio_hour", "GPU J per audio h", "J", 0,
           "GPU energy per hour of audio, joules (the model's GPU, else all GPUs; NaN without an energy counter)",
           gpu_only=True),
    Metric("oom_retries", "OOM retries", "", 0, "out-of-memory retries"),
    Metric("wer_vs_reference", "WER vs reference", "", 3, "word error rate vs reference"),
    Metric("model_wait_percent", "model wait %", "%", 1,
           "the model's wait for its next batch, % of the run (corpus mode: was the GPU starved?)", corpus_only=True),
    Metric("files_done", "files done", "", 0, "files transcribed (corpus mode)", corpus_only=True),
    Metric("files_failed", "files failed", "", 0, "files that failed (corpus mode)", corpus_only=True),
)
BY_KEY: dict[str, Metric] = {metric.key: metric for metric in METRICS}


def metric(key: str) -> Metric:
    """The registry entry of ``key``; KeyError names the known keys."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown metric {key!r}; known: {', '.join(BY_KEY)}") from None


def rounded(key: str, value: Any) -> Any:
    """``value`` rounded to its metric's digits; None where it was not measured."""
    if is_missing(value):
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    return round(value, metric(key).digits)


def compute_metrics(run_: RunRecord) -> dict:
    """Metrics of a run over its transcription phases (``prepare`` onwards); see :class:`Run`."""
    from whisperkit.core.accuracy import word_error_rate
    from whisperkit.measure.columns import gpu_column, gpu_indices

    transcript = run_.transcript
    window = _transcription_window(run_.timeline, run_.marks)
    gpus = gpu_indices(None if window is None else window.columns)
    model_gpu = model_gpu_index(run_)
    if model_gpu in gpus:
        gpus = [model_gpu]
    gpu_util = [gpu_column(i, "util_percent") for i in gpus]
    gpu_mem = [gpu_column(i, "mem_used_mb") for i in gpus]
    return {
        "rtfx": transcript.rtfx,
        "wall_seconds": transcript.wall_seconds,
        "load_seconds": transcript.load_seconds,
        "prepare_seconds": transcript.prepare_seconds,
        "decode_seconds": transcript.decode_seconds,
        "audio_seconds": transcript.audio_seconds,
        "mean_cpu_percent": _mean(window, "cpu_percent"),
        "mean_process_cpu_percent": _mean(window, "process_cpu_percent"),
        "mean_gpu_util_percent": _largest(_mean(window, c) for c in gpu_util),
        "peak_rss_mb": _max(run_.timeline, "process_rss_mb"),
        "rss_growth_mb": _growth(run_.timeline, "process_rss_mb"),
        "peak_gpu_mem_mb": _largest(_max(run_.timeline, c) for c in gpu_mem),
        "gpu_energy_j_per_audio_hour": _energy_per_audio_hour(window, gpus, transcript.audio_seconds),
        "batch_size": transcript.config.get("batch_size"),
        "oom_retries": len(transcript.batch_retries),
        "wer_vs_reference": None if run_.reference is None else word_error_rate(run_.reference, transcript.text),
        **_corpus_metrics(run_.corpus),
    }


def _corpus_metrics(corpus: Any) -> dict:
    """The corpus-only metrics of a corpus run's CorpusResult (None for other runs)."""
    if corpus is None:
        return {m.key: None for m in METRICS if m.corpus_only}
    return {"model_wait_percent": corpus.model_wait_percent, "files_done": len(corpus.transcripts),
            "files_failed": len(corpus.failures)}


def model_gpu_index(run_: RunRecord) -> int | None:
    """The NVML index of the GPU that ran the model (its ``gpu{i}_*`` columns), None where it ran on
    the CPU or cannot be told: from the transcript's config, else the run's environment."""
    index = run_.transcript.config.get("nvml_index") if run_.transcript is not None else None
    if index is None:
        index = ((run_.environment or {}).get("model_gpu") or {}).get("nvml_index")
    return index


def side_summary(run_: RunRecord, walls: list[float] | None = None) -> dict:
    """One side of ``comparison.json``: config, metrics and text."""
    metrics = run_.metrics
    summary = {
        "config": run_.transcript.config,
        "label": run_.label,
        "decoding": decoding_settings(run_.config),
        **{m.key: metrics.get(m.key) for m in METRICS if m.in_summary},
        "text": run_.transcript.text,
    }
    if walls is not None:
        summary["repeat_wall_seconds"] = walls
    return summary


def shown_metrics(runs: Iterable[RunRecord]) -> list[Metric]:
    """The metrics a table of ``runs`` shows: the corpus-only ones only where a run is a corpus run."""
    corpus = any(run_.config.mode == "corpus" for run_ in runs)
    return [m for m in METRICS if corpus or not m.corpus_only]


def _transcription_window(timeline, marks):
    """Timeline rows from the ``prepare`` mark on (the whole timeline when unmarked)."""
    if timeline is None or len(timeline) == 0 or marks is None or len(marks) == 0:
        return timeline
    starts = marks.loc[marks["label"] == "prepare", "time_s"]
    if len(starts) == 0:
        return timeline
    window = timeline[timeline["time_s"] >= float(starts.iloc[0])]
    return window if len(window) else timeline.tail(1)


def _mean(frame, column: str) -> float | None:
    if frame is None or column not in frame or frame[column].isna().all():
        return None
    return float(frame[column].mean())


def _max(frame, column: str) -> float | None:
    if frame is None or column not in frame or frame[column].isna().all():
        return None
    return float(frame[column].max())


def _largest(values: Iterable[float | None]) -> float | None:
    """The largest of the values that were measured (not None), or None."""
    return max((value for value in values if value is not None), default=None)


def _energy_per_audio_hour(window, gpus: list[int], audio_seconds: float) -> float | None:
    """Joules the GPUs used over ``window`` (from NVML's total energy counters) per hour of audio:
    None without a GPU, NaN where a GPU has no counter (before Volta) or no audio was heard."""
    from whisperkit.measure.columns import gpu_column

    if window is None or not gpus:
        return None
    used = 0.0
    for i in gpus:
        column = gpu_column(i, "energy_j")
        if column not in window:
            return math.nan
        readings = window[column].dropna()
        if len(readings) < 2:
            return math.nan
        used += float(readings.iloc[-1] - readings.iloc[0])
    return used / audio_seconds * 3600 if audio_seconds > 0 else math.nan


def _growth(frame, column: str) -> float | None:
    """Peak minus the first reading: what the run added (model load included)."""
    peak = _max(frame, column)
    if peak is None:
        return None
    first = frame[column].dropna().iloc[0]
    return peak - float(first)
