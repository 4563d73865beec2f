"""``transcribe_corpus``: many files through one streaming pipeline, batched across files."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from whisperkit.checks import check_whole
from whisperkit.core.channels import DEFAULT_CHANNELS, check_channels
from whisperkit.core.config import MAX_BATCH_SIZE, MAX_BEAM_SIZE, Config, check_language
from whisperkit.core.corpus.decoding import WindowDecoder, packing_is_safe
from whisperkit.core.corpus.outputs import Manifest, output_formats, write_outputs
from whisperkit.core.corpus.pipeline import Span, run_pipeline
from whisperkit.core.corpus.result import CorpusResult
from whisperkit.core.corpus.sources import check_collisions, find_sources
from whisperkit.core.corpus.stages import GAP_SECONDS, PACK_SECONDS, Failure, Source
from whisperkit.core.models import Model, check_model_language, load_model
from whisperkit.core.transcription import _wrap_whisper_model
from whisperkit.errors import ConfigError

MAX_WORKERS = 64  # reader threads

if TYPE_CHECKING:
    from collections.abc import Callable

    from whisperkit.measure.sampler import Sampler

ENGINES = ("local", "ray")
__all__ = ["CorpusResult", "transcribe_corpus", "transcribe_corpus_config"]


def transcribe_corpus(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    model: Model | str | os.PathLike | None = None,
    *,
    batch_size: int | str = 8,
    pack: bool = True,
    output_dir: str | os.PathLike | None = None,
    output_format: str = "txt",
    workers: int | None = None,
    language: str | None = None,
    beam_size: int = 5,
    resume: bool = True,
    monitor: bool = False,
    monitor_interval: float = 0.25,
    progress: bool = True,
    device: str = "auto",
    compute_type: str = "auto",
    cpu_threads: int = 0,
    engine: str = "local",
    ray_address: str | None = None,
    model_workers: int | None = None,
    sampler: Sampler | None = None,
    channels: str = DEFAULT_CHANNELS,
    channel_names: Sequence[str] | None = None,
    **options: object,
) -> CorpusResult:
    """Transcribe many files through one pipeline: windows from all files batched together.

    Args:
      sources: paths of files, folders (searched recursively for audio and video files) or
        ``@list.txt`` files (one path per line); a list of them.
      model: as for :func:`whisperkit.transcribe`; None is the bundled tiny.en.
      batch_size: windows per model call (across files), or ``"auto"``; halved on out-of-memory.
      pack: put several short files (and voice-detected chunks) in one 30 s window, 0.6 s of
        silence between them, and split the words back by their timestamps (a window where the
        model skipped a clip is decoded again, one clip per window). Only where safe:
        with a fixed ``language`` or an English-only model; for a multilingual model with
        ``language=None`` packing is off (each window's language is detected on its own).
      output_dir: write each file's outputs there as it completes (``DIR/<relative path>.<fmt>``,
        mirroring the folders given) and ``manifest.json``; None keeps them in the result only.
      output_format: txt, json, srt, vtt or all.
      workers: threads reading and voice-detecting files (default: half the CPU cores, 1 to 4).
      resume: skip files ``output_dir``'s manifest lists as done with the same settings;
        False redoes every file (the CLI's ``--overwrite``).
      monitor: sample CPU and GPU utilization into ``timeline`` and ``marks`` (marks
        ``prepare`` as the pipeline starts and ``first batch``). For a :class:`~whisperkit.Run`
        that is saved, reported and plotted like the others, use
        ``whisperkit.run(sources, Config(mode="corpus"))``.
      progress: a progress bar: files done, hours of audio, real-time factor.
      device, compute_type, cpu_threads: where and how a model named by ``model`` is loaded, as
        for :func:`whisperkit.load_model` (engine "ray": in each model actor; there ``cpu_threads``
        0 shares the cluster's CPUs among the CPU actors).
      engine: ``"local"`` (threads in this process) or ``"ray"`` (the same stages on a Ray
        cluster, :mod:`whisperkit.core.corpus.ray_engine`; needs ``pip install whisperkit[ray]``).
      ray_address: engine "ray": the cluster to join (``ray.init(address=...)``); None starts
        a local Ray, or reuses the one this process already joined.
      model_workers: engine "ray": model actors (default: one per GPU of the cluster, or on a
        CPU-only cluster one per CPU, each with one CTranslate2 thread).
      sampler: a running :class:`~whisperkit.Sampler` to mark instead (it is not stopped here;
        :func:`whisperkit.run` passes its own).
      channels, channel_names: what to do with a file of several channels, as
        :class:`whisperkit.Config` says (``auto``, the default: split when they carry different
        signals); each channel of a split file is a stream of its own (its pieces batched with
        the others', never packed into a window of another channel), and the file's outputs
        name the channel of each line.
      options: further decoding keywords (``temperature``, ``initial_prompt``, ...).

    Memory stays bounded whatever the corpus: see :mod:`whisperkit.core.corpus.pipeline` (for
    batch size 8 and 4 workers, about 200 MB of audio and features in flight). Bad files
    (missing, damaged, not audio, empty, silent) land in ``failures``; the others go on.

    >>> result = transcribe_corpus("recordings/", output_dir="transcripts")   # doctest: +SKIP
    >>> result.summary()                                                      # doctest: +SKIP
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; expected one of: {', '.join(ENGINES)}")
    if engine == "ray":
        from whisperkit.core.corpus.ray_engine import require_ray

        require_ray()  # before anything else: one line saying what to install
    formats = output_formats(output_format)
    if batch_size != "auto":
        check_whole(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
    check_whole(beam_size, "beam_size", 1, MAX_BEAM_SIZE)
    check_language(language)
    check_channels(channels, channel_names)
    found = find_sources(sources, channels, None if channel_names is None else tuple(channel_names))
    if engine == "ray":
        placement = {"device": device, "compute_type": compute_type, "cpu_threads": cpu_threads}
        return _transcribe_ray(found, formats, model, placement, batch_size, pack, output_dir, language, beam_size,
                               resume, ray_address, model_workers, options, progress, monitor, monitor_interval,
                               sampler)
    workers = _workers(workers)
    model, load_seconds = _load(model, device, compute_type, cpu_threads)
    check_model_language(model, language)
    pack = bool(pack) and packing_is_safe(model, language)
    resolved_batch = _batch_size(batch_size, model, beam_size)
    decoder = WindowDecoder(model, language=language, beam_size=beam_size, options=options)
    config = corpus_config(model.name, model.compute_type, beam_size, language, pack, options, formats, found)
    manifest, todo, skipped = open_outputs(found, output_dir, config, formats, resume)
    output_dir = None if manifest is None else manifest.output_dir
    result = CorpusResult({}, {}, skipped, 0.0, 0.0, resolved_batch, pack,
                          {**config, **model.describe(), "mode": "corpus", "batch_size": resolved_batch,
                           "workers": workers}, load_seconds=load_seconds, output_dir=output_dir)
    if todo:
        pipeline = functools.partial(run_pipeline, todo, decoder, decoder.feature_extractor,
                                     batch_size=result.batch_size, pack=result.pack, workers=workers)
        try:
            _execute(result, todo, pipeline, manifest, formats, progress, monitor, monitor_interval, sampler)
        finally:
            result.unpacked_windows = decoder.unpacked
    return result


def _transcribe_ray(found, formats, model, placement: dict, batch_size, pack, output_dir, language, beam_size,
                    resume, ray_address, model_workers, options, progress, monitor, monitor_interval,
                    sampler) -> CorpusResult:
    """The Ray engine: the driver's part (files, manifest, outputs, result) is the local engine's."""
    from whisperkit.core.corpus import ray_engine

    batch_size = ray_engine.check_batch_size(batch_size)
    cluster = ray_engine.connect(ray_address)
    spec, settings, actors = ray_engine.plan(model, cluster, batch_size=batch_size, language=language, beam_size=beam_size,
                                             options=options, model_workers=model_workers, **placement)
    pack = bool(pack) and (language is not None or not spec.multilingual)
    config = corpus_config(spec.name, spec.compute_type, beam_size, language, pack, options, formats, found)
    manifest, todo, skipped = open_outputs(found, output_dir, config, formats, resume)
    result = CorpusResult({}, {}, skipped, 0.0, 0.0, batch_size, pack,
                          {**config, **spec.describe(), "mode": "corpus", "batch_size": batch_size,
                           "engine": "ray", "model_workers": actors},
                          output_dir=None if manifest is None else manifest.output_dir, engine="ray",
                          engine_info={**cluster, "model_workers": actors})
    if todo:
        pipeline = functools.partial(ray_engine.run_ray_pipeline, todo, spec, settings, batch_size=batch_size,
                                     pack=pack, model_workers=actors, cluster=cluster)
        _execute(result, todo, pipeline, manifest, formats, progress, monitor, monitor_interval, sampler)
    return result


def _execute(result: CorpusResult, todo: list[Source], pipeline, manifest, formats, progress: bool, monitor: bool,
             monitor_interval: float, sampler: Sampler | None = None) -> None:
    """Run an engine's ``pipeline`` over the files ``todo``, sampling utilization with ``monitor``
    (or marking the caller's running ``sampler``)."""
    own = sampler is None and monitor
    if own:
        from whisperkit.measure.sampler import Sampler

        sampler = Sampler(interval=monitor_interval).start()
    try:
        run_stages(result, todo, pipeline, manifest, formats, progress, sampler)
    finally:
        if own and sampler is not None:
            sampler.stop()
            result.timeline, result.marks = sampler.timeline, sampler.marks
        if manifest is not None:
            manifest.save()


def corpus_config(model_name: str, compute_type: str, beam_size: int, language: str | None, pack: bool,
                  options: dict, formats: tuple[str, ...], found: Sequence[Source] = ()) -> dict:
    """The settings that change what is written: the manifest's ``config`` (both engines); the
    channel settings of the sources ``found`` (all alike), where they are not ``mix``."""
    config = {"model": model_name, "compute_type": compute_type, "beam_size": beam_size,
              "language": language, "pack": pack, "pack_seconds": PACK_SECONDS, "gap_seconds": GAP_SECONDS,
              "options": {k: repr(v) for k, v in sorted(options.items())}, "formats": list(formats)}
    if found and found[0].channels != "mix":
        names = found[0].channel_names
        config.update(channels=found[0].channels, channel_names=None if names is None else list(names))
    return config


def open_outputs(found: list[Source], output_dir: str | os.PathLike | None, config: dict, formats: tuple[str, ...],
                 resume: bool) -> tuple[Manifest | None, list[Source], list[str]]:
    """``(manifest or None, sources to do, paths skipped as done)`` for ``output_dir`` (resume)."""
    if output_dir is None:
        return None, found, []
    check_collisions(found)
    manifest = Manifest.open(os.fspath(output_dir), config, overwrite=not resume)
    todo = [s for s in found if not manifest.is_done(s, formats)]
    skipped = [s.path for s in found if manifest.is_done(s, formats)]
    return manifest, todo, skipped


def run_stages(result: CorpusResult, todo: list[Source], pipeline: Callable[..., Any], manifest: Manifest | None,
               formats: tuple[str, ...], progress: bool, sampler: Sampler | None) -> None:
    """Run ``pipeline(on_file=..., on_batch=...)`` (an engine: the threads of :func:`run_pipeline`,
    or Ray) over the files ``todo``, writing each file's outputs and manifest entry as it completes,
    and fill ``result`` from the run's state (``stats``, ``spans``, ``windows``, ...)."""
    from tqdm.auto import tqdm

    offset = 0.0
    started = time.monotonic()
    if sampler is not None:
        sampler.mark("prepare", at=started)
        offset = float(sampler.marks["time_s"].iloc[-1])
    bar = tqdm(total=len(todo), unit="file", desc="corpus", disable=not progress)

    def on_file(source: Source, outcome, texts) -> None:
        if isinstance(outcome, Failure):
            result.failures[source.path] = outcome.reason
            if manifest is not None:
                manifest.record(source, "failed", reason=outcome.reason)
        else:
            outcome.config = result.config
            result.transcripts[source.path] = outcome
            result.audio_seconds += outcome.audio_seconds
            if manifest is not None:
                write_outputs(manifest.output_dir, source, outcome, formats)
                manifest.record(source, "done", audio_seconds=round(outcome.audio_seconds, 3),
                                warnings=outcome.warnings)
        elapsed = time.monotonic() - started
        bar.update(1)
        bar.set_postfix_str(f"{result.audio_seconds / 3600:.2f} h audio, {result.audio_seconds / elapsed:.1f}x",
                            refresh=False)

    def on_batch() -> None:  # the model's first batch
        now = time.monotonic()
        result.first_batch_seconds = now - started
        if sampler is not None:
            sampler.mark("first batch", at=now)

    try:
        run = pipeline(on_file=on_file, on_batch=on_batch)
    finally:
        bar.close()
        result.wall_seconds = time.monotonic() - started
    order = {source.path: source.index for source in todo}
    result.transcripts = dict(sorted(result.transcripts.items(), key=lambda item: order[item[0]]))
    result.failures = dict(sorted(result.failures.items(), key=lambda item: order[item[0]]))
    result.stages = run.stats
    result.spans = [Span(s.stage, s.thread, s.start_s + offset, s.end_s + offset) for s in run.spans]
    for worker in getattr(run, "workers", []):  # engine "ray": one timeline per model actor
        if len(worker.timeline):
            worker.timeline["time_s"] += offset
        worker.spans = [Span(s.stage, s.thread, s.start_s + offset, s.end_s + offset) for s in worker.spans]
        worker.loaded_at_s += offset
        result.workers.append(worker)
    result.engine_info.update(getattr(run, "info", {}))
    result.windows, result.pieces = run.windows, run.pieces_read
    result.unpacked_windows = getattr(run, "unpacked_windows", 0)  # engine "ray": summed over its actors
    result.batch_retries = run.batch_retries
    result.retry_seconds = run.retry_seconds
    result.batch_size = run.batch_size
    result.config["batch_size"] = run.batch_size


def transcribe_corpus_config(sources: str | os.PathLike | Sequence[str | os.PathLike], config: Config, *,
                             progress: bool = True, sampler: Sampler | None = None, **corpus: Any) -> CorpusResult:
    """:func:`transcribe_corpus` with a ``Config(mode="corpus")``: the engine under
    :func:`whisperkit.run` and :func:`whisperkit.sweep` in corpus mode. ``corpus`` are further
    :func:`transcribe_corpus` keywords that write files or read (``output_dir``,
    ``output_format``, ``resume``, ``workers``); ``sampler``, when given, receives the marks
    ``load``, ``prepare`` and ``first batch``."""
    allowed = {"output_dir", "output_format", "resume", "workers"}
    if set(corpus) - allowed:
        raise ConfigError(f"corpus options: {', '.join(sorted(set(corpus) - allowed))} not taken here; "
                          f"expected some of: {', '.join(sorted(allowed))} (the rest are Config fields)")
    if config.mode != "corpus":
        raise ConfigError(f"transcribe_corpus_config needs mode 'corpus', got {config.mode!r}")
    if sampler is not None:
        sampler.mark("load")
    model = load_model(config.model, config.device, config.compute_type, config.num_workers, config.cpu_threads,
                       config.device_index)
    result = transcribe_corpus(sources, model, batch_size=config.batch_size, pack=config.pack,
                               language=config.language, beam_size=config.beam_size, progress=progress,
                               sampler=sampler, channels=config.channels, channel_names=config.channel_names,
                               **corpus, **config.options)
    result.load_seconds = model.load_seconds
    return result


def _load(model, device: str = "auto", compute_type: str = "auto", cpu_threads: int = 0) -> tuple[Model, float]:
    if isinstance(model, Model):
        return model, 0.0
    if model is not None and not isinstance(model, (str, os.PathLike)):
        return _wrap_whisper_model(model), 0.0
    loaded = load_model(None if model is None else os.fspath(model), device, compute_type, 1, cpu_threads)
    return loaded, loaded.load_seconds


def _batch_size(batch_size, model: Model, beam_size: int) -> int:
    if batch_size == "auto":
        from whisperkit.core.batching import recommend_for_model

        return recommend_for_model(model, beam_size=beam_size)
    return batch_size


def _workers(workers) -> int:
    if workers is None:
        return max(1, min(4, (os.cpu_count() or 2) // 2))
    return check_whole(workers, "workers", 1, MAX_WORKERS)
