"""Running experiments: a monitored run, the seed's before/after comparison, batch-size sweeps.

The seed note's two configurations, exactly as it set them:

- :data:`SEED_BEFORE`: sequential ``WhisperModel.transcribe`` with ``num_workers=24``. Those
  are 24 CTranslate2 workers for 24 concurrent callers, sharing one copy of the weights. With
  one caller, each model call goes to the first free worker (``replica_pool.h``), so the calls
  spread over many workers, and each that runs one builds its own thread team and working
  memory (on a GPU also uses its own CUDA stream): more memory, no gain in time
  (``python benchmarks/workers.py``).
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
from typing import TYPE_CHECKING, cast

from whisperkit.checks import check_number, check_whole
from whisperkit.core.config import MAX_BATCH_SIZE, Config, decoding_settings, matched_options
from whisperkit.core.transcription import transcribe_config
from whisperkit.errors import ConfigError, OutOfMemoryError, WhisperkitError
from whisperkit.experiments.metrics import compute_metrics
from whisperkit.experiments.results import Comparison, Run, Sweep, SweepPoint
from whisperkit.measure.sampler import DEFAULT_INTERVAL_S

if TYPE_CHECKING:
    from collections.abc import Sequence

    from whisperkit.core.audio import AudioSource
    from whisperkit.core.corpus.result import CorpusResult
    from whisperkit.core.transcription import Transcript

    Sources = str | os.PathLike | Sequence[str | os.PathLike]  # corpus mode: files, folders, @list.txt
    from whisperkit.measure.sampler import Sampler

#: Called with the running sampler as each run starts (for live charts).
OnStart = Callable[["Sampler"], None]

SEED_BEFORE = Config(mode="sequential", num_workers=24, label="before: sequential, num_workers=24")
SEED_AFTER = Config(mode="batched", batch_size="auto", num_workers=6, label="after: batched, batch size from memory")

DEFAULT_INTERVAL = DEFAULT_INTERVAL_S  # seconds between utilization samples (the sampler's default)
DEFAULT_SWEEP = (1, 2, 4, 8, 16)  # batch sizes a sweep measures unless told (the CLI and the app too)
MAX_REPEATS = 100  # alternating repeats per side of a comparison


def run(
    audio: AudioSource | Sources,
    config: Config | None = None,
    *,
    reference: str | os.PathLike | None = None,
    interval: float = DEFAULT_INTERVAL,
    progress: bool = True,
    on_start: OnStart | None = None,
    corpus_options: dict | None = None,
) -> Run:
    """Transcribe ``audio`` with ``config`` while sampling CPU and GPU utilization.

    With ``Config(mode="corpus")``, ``audio`` is what :func:`whisperkit.transcribe_corpus`
    takes (files, folders, ``@list.txt``, a list of them); the run's ``corpus`` holds the
    :class:`~whisperkit.CorpusResult` (stages, spans, each file's transcript) and its
    ``transcript`` all the files as one; ``corpus_options`` (``output_dir``, ``output_format``,
    ``resume``, ``workers``) go to :func:`whisperkit.transcribe_corpus`.

    ``reference`` is the expected text, or a ``.txt`` file holding it; None looks for a
    ``.txt`` beside the audio (in corpus mode beside each file, and uses them where every
    file has one). ``on_start``, when given, is called with the running
    :class:`~whisperkit.measure.sampler.Sampler` as soon as it starts, so a live chart can read
    ``sampler.samples(start)`` while the run goes on.
    """
    from whisperkit.measure.environment import collect_environment
    from whisperkit.measure.sampler import Sampler
    from whisperkit.measure.utilization import Utilization

    config = config or Config()
    corpus = config.mode == "corpus"
    if corpus_options and not corpus:
        raise ConfigError("corpus_options go with Config(mode='corpus')")
    reference_text = _reference_for(audio, reference) if not corpus or reference is not None else None
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    corpus_result = None
    with Sampler(interval=interval, cuda_index=config.device_index) as sampler:
        if on_start is not None:
            on_start(sampler)
        if corpus:
            transcript, corpus_result = _corpus_run(cast("Sources", audio), config, sampler, progress, corpus_options)
            if reference is None:
                reference_text = _corpus_reference(corpus_result.transcripts)
        else:
            transcript = transcribe_config(cast("AudioSource", audio), config, progress=progress, sampler=sampler)
    on_gpu = transcript.config.get("device") == "cuda"
    environment = collect_environment(transcript.config.get("device_index", 0) if on_gpu else None)
    result = Run(
        config=config,
        transcript=transcript,
        environment=environment,
        utilization=Utilization.of(sampler),  # with why a GPU column is NaN for good (no GPM, PIDs not NVML's)
        metrics={},
        started_at=started_at,
        reference=reference_text,
        gpu_unavailable_reason=None if sampler.gpu_available else sampler.gpu_unavailable_reason,
        corpus=corpus_result,
    )
    result.metrics = compute_metrics(result)
    result.wer_by_channel = _wer_by_channel(audio, transcript, corpus_result)
    return result


def _wer_by_channel(audio: object, transcript: Transcript, corpus: CorpusResult | None) -> dict:
    """Per-channel WER of a split transcript (each file's, in corpus mode) against ``X.<channel>.txt``."""
    from whisperkit.core.accuracy import wer_by_channel

    if corpus is not None:
        return wer_by_channel(corpus.transcripts)
    return wer_by_channel({os.fspath(audio): transcript}) if isinstance(audio, (str, os.PathLike)) else {}


def _corpus_run(sources: Sources, config: Config, sampler: Sampler, progress: bool,
                corpus_options: dict | None) -> tuple[Transcript, CorpusResult]:
    """A corpus run's files as one transcript, and its CorpusResult."""
    from whisperkit.core.corpus.transcribe import transcribe_corpus_config

    result = transcribe_corpus_config(sources, config, progress=progress, sampler=sampler, **(corpus_options or {}))
    return result.as_transcript(_describe_sources(sources)), result


def _corpus_reference(transcripts: dict) -> str | None:
    """The references of a corpus run's files (a ``.txt`` beside each), joined in file order;
    None unless every transcribed file has one."""
    from whisperkit.core.samples import reference_text

    texts = [reference_text(path) for path in transcripts]
    found = [text for text in texts if text is not None]
    return " ".join(found) if found and len(found) == len(texts) else None


def _describe_sources(sources: object) -> str:
    """The sources of a corpus run as one string (paths joined by ``, ``)."""
    if isinstance(sources, (str, os.PathLike)):
        return os.fspath(sources)
    return ", ".join(os.fspath(source) for source in sources)  # type: ignore[attr-defined]


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

    ``matched=True`` makes the sequential side decode exactly the batched side's chunks (cut
    as ``BatchedInferencePipeline`` cuts them, one window each: ``Config(segmentation="batched")``)
    with the batched side's decoding settings (no timestamps, no previous-text prompt, one
    temperature, no thresholds), so that batching is what remains (with ``num_workers`` and the
    batch size, which ``differences`` lists). ``differences`` lists every setting that differs,
    the segmentation (chunk count and boundaries) included. ``on_start(sampler)`` is passed to every :func:`run` (for live
    charts); ``on_run(side, run)``, when given, is called after each run (side is ``"before"``
    or ``"after"``), so a caller can keep finished runs if a later one fails.

    >>> cmp = compare(whisperkit.sample_path(), matched=True)   # doctest: +SKIP
    >>> [d["setting"] for d in cmp.differences]                 # doctest: +SKIP
    ['mode', 'batch_size', 'num_workers']
    """
    from whisperkit.core.accuracy import word_error_rate

    check_whole(repeats, "repeats", 1, MAX_REPEATS)
    if matched:
        sequential, batched = (before, after) if before.mode == "sequential" else (after, before)
        if sequential.mode != "sequential" or batched.mode != "batched":
            raise WhisperkitError("matched=True needs one sequential and one batched side")
        matched_sequential = sequential.replace(
            options={**sequential.options, **matched_options(batched)},
            segmentation="batched",
            label=(sequential.label or "sequential") + " (matched: batched chunks and decoding)",
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
    audio: AudioSource | Sources,
    batch_sizes: Iterable[int] = DEFAULT_SWEEP,
    config: Config | None = None,
    *,
    model: str | None = None,
    repeats: int = 1,
    interval: float = DEFAULT_INTERVAL,
    progress: bool = True,
    on_start: OnStart | None = None,
    on_run: Callable[[int, Run], None] | None = None,
) -> Sweep:
    """Run batched transcription at each batch size; throughput, memory and utilization per size.

    ``config`` is the base configuration (batched mode is forced, unless it is corpus mode:
    then ``audio`` is the corpus's files or folders and a batch holds windows across files);
    ``model`` overrides its model. ``repeats`` rounds run every batch size once each, alternating
    (1, 2, 4, ..., 1, 2, 4, ...), so a drift of the machine touches every size alike; each point is
    the median run of its size, and ``Sweep.verdict`` says which sizes the repeats separate.
    ``on_start(sampler)`` is passed to every :func:`run`; ``on_run(batch_size, run)``, when
    given, is called after each measured run.
    """
    base = _batched_base(config, model)
    given = list(batch_sizes)
    for size in given:  # before removing repeats: True would pass as a repeat of 1
        check_whole(size, "batch sizes: each", 1, MAX_BATCH_SIZE)
    sizes = list(dict.fromkeys(given))
    if not sizes:
        raise ConfigError("batch sizes: give at least one")
    check_whole(repeats, "repeats", 1, MAX_REPEATS)
    measured: dict[int, list[Run]] = {size: [] for size in sizes}
    out_of_memory: set[int] = set()
    for _ in range(repeats):
        for size in sizes:
            if size in out_of_memory:
                continue
            try:
                measured[size].append(run(audio, base.replace(batch_size=size), interval=interval, progress=progress,
                                          on_start=on_start))
            except OutOfMemoryError:  # out of memory even at batch size 1
                out_of_memory.add(size)
                continue
            if on_run is not None:
                on_run(size, measured[size][-1])
    result = Sweep(points=[])
    for size in sizes:
        _add_point(result, size, measured[size])
    result.stopped_because = "all batch sizes measured" + (f", {repeats} repeats each" if repeats > 1 else "")
    return result


def autotune(
    audio: AudioSource | Sources,
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
    check_whole(limit, "limit", 1, MAX_BATCH_SIZE)
    check_whole(start, "start", 1, limit)
    check_number(min_gain, "min_gain", 0.0, 10.0)
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
    """Every setting, decoding included, whose value differs between two runs, and the
    segmentation (how the audio was cut into windows) where it differs."""
    left = {**before.transcript.config, **decoding_settings(before.config)}
    right = {**after.transcript.config, **decoding_settings(after.config)}
    skip = {"options", "label", "segmentation"}
    found = [
        {"setting": key, "before": left.get(key), "after": right.get(key)}
        for key in dict.fromkeys([*left, *right])
        if key not in skip and left.get(key) != right.get(key)
    ]
    if not _same_chunks(before, after):
        found.append({"setting": "segmentation", "before": segmentation(before), "after": segmentation(after)})
    return found


def segmentation(run_: Run) -> str:
    """How a run cut its audio: its chunks where known, else the sequential pipeline's rule."""
    spans = run_.transcript.chunk_spans
    if spans is not None:
        where = ", ".join(f"{start:.2f}-{end:.2f}" for start, end in spans)
        return f"{len(spans)} chunk(s) of at most 30 s, one window each: {where} s"
    if run_.config.mode == "batched":
        return "VAD chunks (160 ms silences, at most 30 s); boundaries known only without timestamps"
    speech = ("the VAD speech (spans end at 2 s silences) joined" if (run_.config.options or {}).get("vad_filter")
              else "the whole audio")
    return f"30 s windows over {speech}, each starting where the previous window's last timestamp ended"


def _same_chunks(before: Run, after: Run, tolerance_s: float = 0.02) -> bool:
    left, right = before.transcript.chunk_spans, after.transcript.chunk_spans
    if left is None or right is None:
        return False
    return len(left) == len(right) and all(
        abs(a - b) <= tolerance_s for x, y in zip(left, right) for a, b in zip(x, y))


def _sweep_step(result: Sweep, audio, config: Config, interval, progress, on_start, on_run) -> SweepPoint:
    size = int(config.batch_size)  # a sweep's configs name their batch size, never "auto"
    try:
        measured = [run(audio, config, interval=interval, progress=progress, on_start=on_start)]
    except OutOfMemoryError:  # out of memory even at batch size 1
        measured = []
    point = _add_point(result, size, measured)
    if measured and on_run is not None:
        on_run(size, measured[0])
    return point


def _add_point(result: Sweep, size: int, runs: list[Run]) -> SweepPoint:
    """The point of batch size ``size`` from its runs (its median run; none: out of memory)."""
    if not runs:
        point = SweepPoint(size, math.nan, math.nan, math.nan, None, math.nan, None, oom=True)
        result.points.append(point)
        return point
    median = _median_run(runs)
    metrics = median.metrics
    point = SweepPoint(
        batch_size=size,
        rtfx=metrics["rtfx"],
        wall_seconds=metrics["wall_seconds"],
        peak_rss_mb=metrics["peak_rss_mb"],
        peak_gpu_mem_mb=metrics["peak_gpu_mem_mb"],
        mean_cpu_percent=metrics["mean_cpu_percent"],
        mean_gpu_util_percent=metrics["mean_gpu_util_percent"],
        oom=any(r.metrics["oom_retries"] > 0 for r in runs),
    )
    result.points.append(point)
    result.runs.append(median)
    result.repeat_rtfx[size] = [r.metrics["rtfx"] for r in runs]
    return point


def _batched_base(config: Config | None, model: str | None) -> Config:
    base = config or SEED_AFTER
    if base.mode != "corpus":  # a corpus sweep batches windows across its files
        base = base.replace(mode="batched")
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
    from whisperkit.core.accuracy import read_reference
    from whisperkit.core.samples import reference_text

    if reference is None:
        return reference_text(audio) if isinstance(audio, (str, os.PathLike)) else None
    return read_reference(reference)
