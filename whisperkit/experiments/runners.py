"""Running experiments: a monitored run, the seed's before/after comparison, batch-size sweeps.

The seed note's two configurations, exactly as it set them:

- :data:`SEED_BEFORE`: sequential ``WhisperModel.transcribe`` with ``num_workers=24``. Those
  are 24 model replicas for 24 concurrent callers; one call uses one, so they only cost memory.
- :data:`SEED_AFTER`: ``BatchedInferencePipeline`` with a batch size chosen from device memory
  and ``num_workers=6``.

Every run records its machine, a utilization timeline with the phases ``load``, ``prepare``
and ``decode``, and metrics over the transcription itself (``prepare`` and ``decode``).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from whisperkit.checks import is_whole
from whisperkit.core.config import Config, decoding_settings, matched_options
from whisperkit.core.transcription import transcribe_config
from whisperkit.errors import DeviceError, WhisperkitError
from whisperkit.experiments.metrics import compute_metrics
from whisperkit.experiments.results import Comparison, Run, Sweep, SweepPoint

if TYPE_CHECKING:
    from whisperkit.core.audio import AudioSource
    from whisperkit.measure.sampler import Sampler

#: Called with the running sampler as each run starts (for live charts).
OnStart = Callable[["Sampler"], None]

SEED_BEFORE = Config(mode="sequential", num_workers=24, label="before: sequential, num_workers=24")
SEED_AFTER = Config(mode="batched", batch_size="auto", num_workers=6, label="after: batched, batch size from memory")

DEFAULT_INTERVAL = 0.1  # seconds between utilization samples
DEFAULT_SWEEP = (1, 2, 4, 8, 16)  # batch sizes a sweep measures unless told (the CLI and the app too)


def run(
    audio: AudioSource,
    config: Config | None = None,
    *,
    reference: str | os.PathLike | None = None,
    interval: float = DEFAULT_INTERVAL,
    progress: bool = True,
    on_start: OnStart | None = None,
) -> Run:
    """Transcribe ``audio`` with ``config`` while sampling CPU and GPU utilization.

    ``reference`` is the expected text, or a ``.txt`` file holding it; None looks for a
    ``.txt`` beside the audio. ``on_start``, when given, is called with the running
    :class:`~whisperkit.measure.sampler.Sampler` as soon as it starts, so a live chart can read
    ``sampler.samples(start)`` while the run goes on.
    """
    from whisperkit.measure.environment import collect_environment
    from whisperkit.measure.sampler import Sampler

    config = config or Config()
    reference_text = _reference_for(audio, reference)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with Sampler(interval=interval) as sampler:
        if on_start is not None:
            on_start(sampler)
        transcript = transcribe_config(audio, config, progress=progress, sampler=sampler)
    environment = collect_environment()
    result = Run(
        config=config,
        transcript=transcript,
        environment=environment,
        timeline=sampler.timeline,
        marks=sampler.marks,
        metrics={},
        started_at=started_at,
        reference=reference_text,
        gpu_unavailable_reason=None if sampler.gpu_available else sampler.gpu_unavailable_reason,
    )
    result.metrics = compute_metrics(result)
    return result


def compare(
    audio: AudioSource,
    before: Config = SEED_BEFORE,
    after: Config = SEED_AFTER,
    *,
    reference: str | os.PathLike | None = None,
    repeats: int = 1,
    matched: bool = False,
    interval: float = DEFAULT_INTERVAL,
    progress: bool = True,
    on_start: OnStart | None = None,
    on_run: Callable[[str, Run], None] | None = None,
) -> Comparison:
    """Run ``before`` and ``after`` on the same audio, alternating ``repeats`` times.

    ``matched=True`` gives the sequential side the batched side's decoding options (VAD, no
    timestamps, no previous-text prompt, one temperature, no thresholds), so that what remains
    different is batching itself. ``on_start(sampler)`` is passed to every :func:`run` (for live
    charts); ``on_run(side, run)``, when given, is called after each run (side is ``"before"``
    or ``"after"``), so a caller can keep finished runs if a later one fails.

    >>> cmp = compare(whisperkit.sample_path())          # doctest: +SKIP
    >>> round(cmp.speedup, 1), cmp.wer_between < 0.1     # doctest: +SKIP
    (2.1, True)
    """
    from whisperkit.core.accuracy import word_error_rate

    if not is_whole(repeats, 1):
        raise WhisperkitError(f"repeats must be a whole number of at least 1, got {repeats!r}")
    if matched:
        sequential, batched = (before, after) if before.mode == "sequential" else (after, before)
        if sequential.mode != "sequential" or batched.mode != "batched":
            raise WhisperkitError("matched=True needs one sequential and one batched side")
        matched_sequential = sequential.replace(
            options={**sequential.options, **matched_options(batched)},
            label=(sequential.label or "sequential") + " (matched decoding)",
        )
        before, after = (matched_sequential, after) if before is sequential else (before, matched_sequential)
    before_runs: list[Run] = []
    after_runs: list[Run] = []
    for _ in range(repeats):
        for side, config, runs in (("before", before, before_runs), ("after", after, after_runs)):
            _release_models()  # each side loads its own model: fair load times, no other side's memory
            runs.append(run(audio, config, reference=reference, interval=interval, progress=progress,
                            on_start=on_start))
            if on_run is not None:
                on_run(side, runs[-1])
    before_run, after_run = _median_run(before_runs), _median_run(after_runs)
    before_wall = statistics.median(r.transcript.wall_seconds for r in before_runs)
    after_wall = statistics.median(r.transcript.wall_seconds for r in after_runs)
    reference_text = before_run.reference
    return Comparison(
        before=before_run,
        after=after_run,
        before_runs=before_runs,
        after_runs=after_runs,
        speedup=before_wall / after_wall if after_wall > 0 else math.nan,
        wer_between=word_error_rate(before_run.transcript.text, after_run.transcript.text),
        wer_vs_reference=None if reference_text is None else {
            "before": before_run.metrics["wer_vs_reference"],
            "after": after_run.metrics["wer_vs_reference"],
        },
        differences=differences(before_run, after_run),
        matched=matched,
    )


def sweep(
    audio: AudioSource,
    batch_sizes: Iterable[int] = DEFAULT_SWEEP,
    config: Config | None = None,
    *,
    model: str | None = None,
    interval: float = DEFAULT_INTERVAL,
    progress: bool = True,
    on_start: OnStart | None = None,
    on_run: Callable[[int, Run], None] | None = None,
) -> Sweep:
    """Run batched transcription at each batch size; throughput, memory and utilization per size.

    ``config`` is the base configuration (batched mode is forced); ``model`` overrides its model.
    ``on_start(sampler)`` is passed to every :func:`run`; ``on_run(batch_size, run)``, when
    given, is called after each measured batch size.
    """
    base = _batched_base(config, model)
    sizes = list(batch_sizes)
    if not sizes or not all(is_whole(s, 1) for s in sizes):
        raise WhisperkitError(f"batch sizes must be whole numbers of at least 1, got {sizes!r}")
    result = Sweep(points=[])
    for size in sizes:
        _sweep_step(result, audio, base.replace(batch_size=size), interval, progress, on_start, on_run)
    result.stopped_because = "all batch sizes measured"
    return result


def autotune(
    audio: AudioSource,
    model: str | None = None,
    config: Config | None = None,
    *,
    start: int = 1,
    limit: int = 64,
    min_gain: float = 0.05,
    interval: float = DEFAULT_INTERVAL,
    progress: bool = True,
    on_start: OnStart | None = None,
    on_run: Callable[[int, Run], None] | None = None,
) -> Sweep:
    """Measure: double the batch size from ``start`` until throughput rises less than ``min_gain``
    (5 %), memory runs out, the batch already holds every speech chunk of the audio (a larger
    one would change nothing), or ``limit`` is passed. ``result.best`` is the batch size to use."""
    base = _batched_base(config, model)
    result = Sweep(points=[])
    size = start
    while True:
        point = _sweep_step(result, audio, base.replace(batch_size=size), interval, progress, on_start, on_run)
        if point.oom:
            result.stopped_because = f"out of memory at batch size {size}"
            break
        chunks = result.runs[-1].transcript.chunks
        if chunks is not None and size >= chunks:
            result.stopped_because = f"batch size {size} already holds all {chunks} speech chunk(s)"
            break
        if len(result.points) > 1:
            previous = result.points[-2]
            if point.rtfx < previous.rtfx * (1 + min_gain):
                result.stopped_because = (
                    f"throughput rose {100 * (point.rtfx / previous.rtfx - 1):.1f} % from batch size "
                    f"{previous.batch_size} to {size}, less than {100 * min_gain:.0f} %"
                )
                break
        if size * 2 > limit:
            result.stopped_because = f"reached the limit of batch size {limit}"
            break
        size *= 2
    return result


def differences(before: Run, after: Run) -> list[dict]:
    """Every setting, decoding included, whose value differs between two runs."""
    left = {**before.transcript.config, **decoding_settings(before.config)}
    right = {**after.transcript.config, **decoding_settings(after.config)}
    skip = {"options", "label"}
    return [
        {"setting": key, "before": left.get(key), "after": right.get(key)}
        for key in dict.fromkeys([*left, *right])
        if key not in skip and left.get(key) != right.get(key)
    ]


def _sweep_step(result: Sweep, audio, config: Config, interval, progress, on_start, on_run) -> SweepPoint:
    size = int(config.batch_size)  # a sweep's configs name their batch size, never "auto"
    try:
        measured = run(audio, config, interval=interval, progress=progress, on_start=on_start)
    except DeviceError:  # out of memory even at batch size 1
        point = SweepPoint(size, math.nan, math.nan, math.nan, None, math.nan, None, oom=True)
        result.points.append(point)
        return point
    metrics = measured.metrics
    point = SweepPoint(
        batch_size=size,
        rtfx=metrics["rtfx"],
        wall_seconds=metrics["wall_seconds"],
        peak_rss_mb=metrics["peak_rss_mb"],
        peak_gpu_mem_mb=metrics["peak_gpu_mem_mb"],
        mean_cpu_percent=metrics["mean_cpu_percent"],
        mean_gpu_util_percent=metrics["mean_gpu_util_percent"],
        oom=metrics["oom_retries"] > 0,
    )
    result.points.append(point)
    result.runs.append(measured)
    if on_run is not None:
        on_run(size, measured)
    return point


def _batched_base(config: Config | None, model: str | None) -> Config:
    base = (config or SEED_AFTER).replace(mode="batched")
    if model is not None:
        base = base.replace(model=model)
    return base.replace(label="")


def _release_models() -> None:
    import gc

    from whisperkit.core.models import clear_model_cache

    clear_model_cache()
    gc.collect()


def _median_run(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.transcript.wall_seconds)
    return ordered[(len(ordered) - 1) // 2]


def _reference_for(audio, reference) -> str | None:
    from whisperkit.core.samples import reference_text

    if reference is None:
        return reference_text(audio) if isinstance(audio, (str, os.PathLike)) else None
    if isinstance(reference, os.PathLike) or (isinstance(reference, str) and reference.endswith(".txt")):
        try:
            with open(reference, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as error:
            raise WhisperkitError(f"cannot read reference {reference}: {error.strerror or error}") from None
    return str(reference)
