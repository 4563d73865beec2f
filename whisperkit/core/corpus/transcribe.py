"""The corpus driver: ``transcribe_corpus`` chooses an engine once and does the rest for every engine.

One road for every entry point (Python, CLI, app, :func:`whisperkit.run`): a ``Config(mode="corpus")``
(:func:`transcribe_corpus` builds it from its keywords) -> :func:`transcribe_corpus_config` ->
:func:`~whisperkit.core.corpus.engines.open_engine` (the thread engine or the Ray engine, which
load or plan the model from the Config and refuse what they cannot honour in one line) ->
the driver's part, the same for both: find the files, open the output folder's manifest
(resume), run the engine, write each file's outputs and manifest entry as it completes, build
the :class:`~whisperkit.core.corpus.result.CorpusResult`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from whisperkit.core.channels import DEFAULT_CHANNELS
from whisperkit.core.config import Config, Settings
from whisperkit.core.corpus.engines import open_engine
from whisperkit.core.corpus.engines.base import Span
from whisperkit.core.corpus.outputs import Manifest, check_outputs, open_outputs, write_file
from whisperkit.core.corpus.result import CorpusResult
from whisperkit.core.corpus.sources import find_sources
from whisperkit.core.corpus.stages import GAP_SECONDS, PACK_SECONDS, Failure, Source
from whisperkit.core.output_formats import output_formats
from whisperkit.errors import ConfigError
from whisperkit.measure.sampler import DEFAULT_INTERVAL_S
from whisperkit.measure.utilization import Utilization

if TYPE_CHECKING:
    from whisperkit.core.corpus.engines.base import Engine
    from whisperkit.core.models import Model
    from whisperkit.measure.sampler import Sampler

__all__ = ["CorpusResult", "transcribe_corpus", "transcribe_corpus_config"]
# the keywords of transcribe_corpus_config beside the Config (where and how files are read and written)
RUN_OPTIONS = ("output_dir", "output_format", "resume", "reader_threads", "workers", "engine", "ray_address",
               "model_workers", "monitor", "monitor_interval")


def transcribe_corpus(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    model: Model | str | os.PathLike | None = None,
    *,
    batch_size: int | str = 8,
    pack: bool = True,
    output_dir: str | os.PathLike | None = None,
    output_format: str = "txt",
    reader_threads: int | None = None,
    language: str | None = None,
    beam_size: int = 5,
    resume: bool = True,
    monitor: bool = False,
    monitor_interval: float = DEFAULT_INTERVAL_S,
    progress: bool = True,
    device: str = "auto",
    device_index: int = 0,
    compute_type: str = "auto",
    num_workers: int = 1,
    cpu_threads: int = 0,
    engine: str = "local",
    ray_address: str | None = None,
    model_workers: int | None = None,
    sampler: Sampler | None = None,
    workers: int | None = None,
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
      pack: put several short files (and voice-detected pieces) in one 30 s window, 0.6 s of
        silence between them, and split the words back by their timestamps (a window where the
        model skipped a clip is decoded again, one clip per window). Only where safe:
        with a fixed ``language`` or an English-only model; for a multilingual model with
        ``language=None`` packing is off (each window's language is detected on its own).
      output_dir: write each file's outputs there as it completes (``DIR/<relative path>.<fmt>``,
        mirroring the folders given) and ``manifest.json``; None keeps them in the result only.
      output_format: txt, json, srt, vtt or all.
      reader_threads: engine "local": threads reading and voice-detecting files (default: half
        the CPU cores, 1 to 4). ``workers`` is its old name (deprecated).
      resume: skip files ``output_dir``'s manifest lists as done with the same settings;
        False redoes every file (the CLI's ``--overwrite``).
      monitor: sample CPU and GPU utilization into ``timeline`` and ``marks`` every
        ``monitor_interval`` seconds (marks ``prepare`` as the pipeline starts and ``first
        batch``). For a :class:`~whisperkit.Run` that is saved, reported and plotted like the
        others, use ``whisperkit.run(sources, Config(mode="corpus"))``.
      progress: a progress bar: files done, hours of audio, real-time factor.
      device, device_index, compute_type, num_workers, cpu_threads: where and how a model named
        by ``model`` is loaded, as for :func:`whisperkit.load_model` (``num_workers`` is
        CTranslate2's). Engine "ray": in each model worker, which gets the GPU Ray gives it
        (``device_index`` other than 0 is refused); ``cpu_threads`` 0 shares the cluster's
        CPUs among CPU model workers.
      engine: ``"local"`` (threads in this process) or ``"ray"`` (the same stages on a Ray
        cluster, :mod:`whisperkit.core.corpus.engines.ray_engine`; needs ``pip install whisperkit[ray]``).
      ray_address: engine "ray": the cluster to join (``HOST:6379``, ``ray://HOST:10001``); None
        starts a Ray of this process's own on this machine (or uses the one it already joined,
        or the address in ``RAY_ADDRESS``). An address that does not answer fails in one line.
      model_workers: engine "ray": model workers, each a Ray actor with its own model (default:
        one per GPU of the cluster, or on a CPU-only cluster one per CPU, as many as leave room
        for the CPU stages; more than fit is refused in one line).
      sampler: a running :class:`~whisperkit.Sampler` to mark instead (it is not stopped here;
        :func:`whisperkit.run` passes its own).
      channels, channel_names: what to do with a file of several channels, as
        :class:`whisperkit.Config` says (``auto``, the default: split when they carry different
        signals); each channel of a split file is a stream of its own (its pieces batched with
        the others', never packed into a window of another channel), and the file's outputs
        name the channel of each line.
      channels, channel_names: what to do with a file of several channels, as
        :class:`whisperkit.Config` says (``auto``, the default: split when they carry different
        signals); each channel of a split file is a stream of its own (its pieces batched with
        the others', never packed into a window of another channel), and the file's outputs
        name the channel of each line.
      options: further decoding keywords (``temperature``, ``initial_prompt``, ...).

    Every setting is checked by :class:`~whisperkit.Config` (the same ranges as everywhere).
    Memory stays bounded whatever the corpus: see :mod:`whisperkit.core.corpus.engines.threads`
    (for batch size 8 and 4 reader threads, about 200 MB of audio and features in flight). Bad
    files (missing, damaged, not audio, empty, silent) land in ``failures``; the others go on.

    >>> result = transcribe_corpus("recordings/", output_dir="transcripts")   # doctest: +SKIP
    >>> result.summary()                                                      # doctest: +SKIP
    """
    named = model is None or isinstance(model, (str, os.PathLike))
    config = Config(mode="corpus", model=None if not named or model is None else os.fspath(model),  # type: ignore[arg-type]
                    device=device, device_index=device_index, compute_type=compute_type, batch_size=batch_size,
                    num_workers=num_workers, cpu_threads=cpu_threads, beam_size=beam_size, language=language,
                    pack=pack, options=dict(options), channels=channels,
                    channel_names=None if channel_names is None else tuple(channel_names))
    return transcribe_corpus_config(sources, config, progress=progress, sampler=sampler, model=None if named else model,
                                    output_dir=output_dir, output_format=output_format, resume=resume,
                                    reader_threads=reader_threads, workers=workers, engine=engine,
                                    ray_address=ray_address, model_workers=model_workers, monitor=monitor,
                                    monitor_interval=monitor_interval)


def transcribe_corpus_config(sources: str | os.PathLike | Sequence[str | os.PathLike], config: Config, *,
                             progress: bool = True, sampler: Sampler | None = None, model: object | None = None,
                             **run: Any) -> CorpusResult:
    """:func:`transcribe_corpus` with a ``Config(mode="corpus")``: the one road every entry point
    takes (:func:`whisperkit.run`, :func:`whisperkit.sweep`, the CLI, the app). ``run`` are
    the keywords of :func:`transcribe_corpus` that are not Config fields (:data:`RUN_OPTIONS`:
    outputs, resume, reader threads, engine, Ray address and model workers, monitoring);
    ``model`` a loaded model to use instead of ``config.model``; ``sampler``, when given,
    receives the marks ``load``, ``prepare`` and ``first batch``."""
    unknown = sorted(set(run) - set(RUN_OPTIONS))
    if unknown:
        raise ConfigError(f"corpus options: {', '.join(unknown)} not taken here; expected some of: "
                          f"{', '.join(RUN_OPTIONS)} (the rest are Config fields)")
    if not isinstance(config, Config) or config.mode != "corpus":
        raise ConfigError(f"transcribe_corpus_config needs a Config with mode 'corpus', got {getattr(config, 'mode', config)!r}")
    reader_threads = _reader_threads(run.get("reader_threads"), run.get("workers"))
    formats = output_formats(run.get("output_format", "txt"))
    found = find_sources(sources, config.channels, config.channel_names)
    check_outputs(found, run.get("output_dir"), formats)  # before the model loads: a bad output folder fails at once
    if sampler is not None:
        sampler.mark("load")
    engine = open_engine(run.get("engine", "local"), config, model, reader_threads=reader_threads,
                         ray_address=run.get("ray_address"), model_workers=run.get("model_workers"))
    settings = engine.model_settings
    written = corpus_config(settings["model"], settings["compute_type"], config.beam_size, config.language, engine.pack,
                            config.options, formats, found)
    manifest, todo, skipped = open_outputs(found, run.get("output_dir"), written, formats, run.get("resume", True))
    result = CorpusResult({}, {}, skipped, 0.0, 0.0, engine.batch_size, engine.pack,
                          Settings({**written, **settings, "mode": "corpus", "batch_size": engine.batch_size,
                                    "engine": engine.name, **engine_settings(engine)}),
                          load_seconds=engine.load_seconds, output_dir=None if manifest is None else manifest.output_dir,
                          engine=engine.name, engine_info=dict(engine.info))
    if todo:
        _execute(result, todo, engine, manifest, formats, progress, bool(run.get("monitor", False)),
                 run.get("monitor_interval", DEFAULT_INTERVAL_S), sampler, cuda_index=config.device_index)
    return result


def engine_settings(engine: Engine) -> dict:
    """The engine's own settings, for the result's config: reader threads, or model workers."""
    keys = ("reader_threads", "model_workers")
    return {key: engine.info[key] for key in keys if key in engine.info}


def _reader_threads(reader_threads: int | None, workers: int | None) -> int | None:
    if workers is None:
        return reader_threads
    warnings.warn("transcribe_corpus(workers=...) is now reader_threads=... (the threads that read files; "
                  "'workers' is deprecated and goes in the next release)", DeprecationWarning, stacklevel=4)
    if reader_threads is not None and reader_threads != workers:
        raise ConfigError(f"reader_threads={reader_threads} and workers={workers} (its old name) disagree; give reader_threads only")
    return workers


def _execute(result: CorpusResult, todo: list[Source], engine: Engine, manifest: Manifest | None, formats: tuple[str, ...],
             progress: bool, monitor: bool, monitor_interval: float, sampler: Sampler | None = None,
             cuda_index: int = 0) -> None:
    """Run ``engine`` over the files ``todo``, sampling utilization with ``monitor`` (the model's
    CUDA device ``cuda_index``: its MIG instance where there is one), or marking the caller's
    running ``sampler``."""
    own = sampler is None and monitor
    if own:
        from whisperkit.measure.sampler import Sampler

        sampler = Sampler(interval=monitor_interval, cuda_index=cuda_index).start()
    try:
        run_stages(result, todo, engine, manifest, formats, progress, sampler)
    finally:
        if own and sampler is not None:
            sampler.stop()
            result.utilization = Utilization.of(sampler)
        if manifest is not None:
            manifest.close()  # saved, and the folder released


def corpus_config(model_name: str, compute_type: str, beam_size: int, language: str | None, pack: bool,
                  options: dict, formats: tuple[str, ...], found: Sequence[Source] = ()) -> dict:
    """The settings that change what is written: the manifest's ``config`` (every engine); the
    channel settings of the sources ``found`` (all alike), where they are not ``mix``."""
    config = {"model": model_name, "compute_type": compute_type, "beam_size": beam_size,
              "language": language, "pack": pack, "pack_seconds": PACK_SECONDS, "gap_seconds": GAP_SECONDS,
              "options": {k: repr(v) for k, v in sorted(options.items())}, "formats": list(formats)}
    if found and found[0].channels != "mix":
        names = found[0].channel_names
        config.update(channels=found[0].channels, channel_names=None if names is None else list(names))
    return config


def run_stages(result: CorpusResult, todo: list[Source], engine: Engine, manifest: Manifest | None,
               formats: tuple[str, ...], progress: bool, sampler: Sampler | None) -> None:
    """Run ``engine`` over the files ``todo``, writing each file's outputs and manifest entry as
    it completes, and fill ``result`` from the :class:`~whisperkit.core.corpus.engines.base.EngineRun`."""
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
            # the run's settings with the batch size that decoded this file: its own snapshot, which
            # a later out-of-memory halving does not change
            outcome.config = result.config.replace(batch_size=outcome.config.get("batch_size", result.batch_size))
            result.transcripts[source.path] = outcome
            result.audio_seconds += outcome.audio_seconds
            if manifest is not None:
                reason = write_file(manifest, source, outcome, formats, audio_seconds=round(outcome.audio_seconds, 3),
                                    warnings=outcome.warnings)
                if reason is not None:  # transcribed, but its outputs could not be written
                    result.failures[source.path] = reason
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
        run = engine.run(todo, on_file, on_batch)
    finally:
        bar.close()
        result.wall_seconds = time.monotonic() - started
    order = {source.path: source.index for source in todo}
    result.transcripts = dict(sorted(result.transcripts.items(), key=lambda item: order[item[0]]))
    result.failures = dict(sorted(result.failures.items(), key=lambda item: order[item[0]]))
    result.stages = run.stats
    result.spans = [Span(s.stage, s.thread, s.start_s + offset, s.end_s + offset) for s in run.spans]
    for worker in run.worker_timelines:  # engine "ray": one timeline per model worker
        if len(worker.timeline):  # type: ignore[arg-type]
            worker.timeline["time_s"] += offset  # type: ignore[index]
        worker.spans = [Span(s.stage, s.thread, s.start_s + offset, s.end_s + offset) for s in worker.spans]
        worker.loaded_at_s += offset
        result.worker_timelines.append(worker)
    result.engine_info.update(run.info)
    result.windows, result.pieces, result.unpacked_windows = run.windows, run.pieces, run.unpacked_windows
    result.batch_retries = run.batch_retries
    result.retry_seconds = run.retry_seconds
    result.batch_size = run.batch_size
    result.config = result.config.replace(batch_size=run.batch_size)  # the size the run settled on
