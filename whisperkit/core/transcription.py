"""One entry point for sequential and batched transcription, and the Transcript it returns.

``mode="sequential"`` calls ``WhisperModel.transcribe``: one 30 s window at a time, each
decoded with the previous text as its prompt. ``mode="batched"`` calls
``BatchedInferencePipeline(model).transcribe(batch_size=...)``: Silero VAD cuts the audio into
speech chunks of up to 30 s, and ``batch_size`` chunks are decoded together in one model call.

Both calls prepare before they return (decoding the file, VAD on the CPU, log-mel features
for the whole file or every chunk) and decode lazily while their segments are read. The
preparation is not always CPU only: with ``language=None`` (the default) and a multilingual
model, both calls detect the language before they return, and that runs the model (the
encoder and one decoder step, on the GPU when the model is there). An English-only model such
as the bundled tiny.en skips detection. whisperkit times the two parts separately:
``prepare_seconds`` until the call returns, ``decode_seconds`` for the rest.

The two pipelines also cut the audio differently (see :mod:`whisperkit.core.chunking`);
``Config(segmentation="batched")`` makes a sequential run decode the batched pipeline's chunks.

A file of several channels is mixed to mono, or each channel transcribed on its own and the
segments named by their channel (``Config.channels``: mix, split, or auto, the default; see
:mod:`whisperkit.core.channels`). The :class:`Transcript` it returns, and its formats, are in
:mod:`whisperkit.core.transcript` (importable from here too).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from whisperkit.core.audio import MAX_CHANNELS, Audio, audio_from_array, count_channels, load_audio
from whisperkit.core.channels import DEFAULT_CHANNELS, ChannelChoice, check_split_count, choose_for
from whisperkit.core.config import Config, Settings
from whisperkit.core.models import Model, check_model_language, load_model
from whisperkit.core.models import wrap_whisper_model as _wrap_whisper_model
from whisperkit.core.transcript import Segment, Transcript
from whisperkit.errors import ConfigError, first_line
from whisperkit.measure.sampler import DEFAULT_INTERVAL_S

__all__ = ["Segment", "Transcript", "transcribe", "transcribe_config"]

if TYPE_CHECKING:
    from collections.abc import Sequence

    from whisperkit.core.audio import AudioSource
    from whisperkit.measure.sampler import Sampler


def transcribe(
    audio: AudioSource,
    model: Model | str | os.PathLike | None = None,
    *,
    mode: str = "batched",
    batch_size: int | str = 8,
    beam_size: int = 5,
    language: str | None = None,
    device: str = "auto",
    device_index: int = 0,
    compute_type: str = "auto",
    num_workers: int = 1,
    cpu_threads: int = 0,
    channels: str = DEFAULT_CHANNELS,
    channel_names: Sequence[str] | None = None,
    progress: bool = True,
    monitor: bool = False,
    monitor_interval: float = DEFAULT_INTERVAL_S,
    **options: Any,
) -> Transcript:
    """Transcribe one audio file (or a 16 kHz float32 array).

    Args:
      audio: a path to any audio or video file PyAV can read (a pipe such as ``/dev/stdin`` too),
        a file object opened in binary mode, or a 16 kHz array (see :func:`audio_from_array`
        for the rules: integer PCM is scaled, stereo averaged, NaN refused).
      model: a :class:`Model` from :func:`load_model`, a faster-whisper ``WhisperModel``, or a
        name or folder to load (with ``device``, ``device_index``, ``compute_type``,
        ``num_workers``, ``cpu_threads``; see :func:`whisperkit.load_model`); None is the bundled tiny.en.
      mode: ``"batched"`` or ``"sequential"``.
      batch_size: chunks decoded together in batched mode (at least 1), or ``"auto"``.
      channels: a file of several channels is ``"mix"``-ed to mono, ``"split"`` (each channel
        transcribed on its own, segments named by channel) or, with ``"auto"``, split when the
        channels carry different signals; ``channel_names`` name them (default ``left``,
        ``right`` for stereo, ``ch0`` .. ``chN`` otherwise). See :mod:`whisperkit.core.channels`.
      progress: show a progress bar in seconds of audio (tqdm; renders in notebooks too).
      monitor: sample CPU and GPU utilization while it runs into ``timeline`` and ``marks``,
        every ``monitor_interval`` seconds, with the phases ``load``, ``prepare``, ``decode``.
      options: further faster-whisper ``transcribe`` keywords (``vad_filter``, ``temperature``, ...).

    >>> t = transcribe(whisperkit.sample_path(), mode="sequential")   # doctest: +SKIP
    >>> t.text[:20], round(t.rtfx)                                     # doctest: +SKIP
    ('Four score and seven', 12)
    """
    for flag, value in (("progress", progress), ("monitor", monitor)):
        if not isinstance(value, bool):
            raise ConfigError(f"{flag} must be True or False, got {value!r}")
    if model is not None and not isinstance(model, (Model, str, os.PathLike)):
        model = _wrap_whisper_model(model)
    name: str | None
    if isinstance(model, Model):  # already loaded: its placement is the one used (checked all the same)
        Config(num_workers=num_workers, cpu_threads=cpu_threads, device=device, compute_type=compute_type)
        name, device, compute_type = model.name, model.device, model.compute_type
        num_workers, cpu_threads, device_index = model.num_workers, model.cpu_threads, model.device_index
    else:
        name = None if model is None else os.fspath(model)
    config = Config(
        model=name,
        device=device,
        device_index=device_index,
        compute_type=compute_type,
        mode=mode,
        batch_size=batch_size,
        num_workers=num_workers,
        cpu_threads=cpu_threads,
        beam_size=beam_size,
        language=language,
        options=options,
        channels=channels,
        channel_names=None if channel_names is None else tuple(channel_names),
    )
    loaded = model if isinstance(model, Model) else None
    if not monitor:
        return transcribe_config(audio, config, model=loaded, progress=progress)
    from whisperkit.measure.sampler import Sampler
    from whisperkit.measure.utilization import Utilization

    with Sampler(interval=monitor_interval, cuda_index=config.device_index) as sampler:
        transcript = transcribe_config(audio, config, model=loaded, progress=progress, sampler=sampler)
    transcript.utilization = Utilization.of(sampler)
    return transcript


def transcribe_config(
    audio: AudioSource,
    config: Config,
    model: Model | None = None,
    progress: bool = True,
    sampler: Sampler | None = None,
) -> Transcript:
    """Transcribe with a :class:`Config`; the engine under :func:`transcribe` and experiments.

    ``model``, when given, must be the model the config names (it saves a cache look-up).
    ``sampler``, when given, receives the phase marks ``load``, ``prepare`` and ``decode``.
    """
    if config.mode == "corpus":
        raise ConfigError("mode 'corpus' transcribes many files through one pipeline: use "
                          "whisperkit.transcribe_corpus(...) or whisperkit.run(sources, Config(mode='corpus'))")
    mark = sampler.mark if sampler is not None else _no_mark
    mark("load")
    if model is None:
        model = load_model(config.model, config.device, config.compute_type, config.num_workers, config.cpu_threads,
                           config.device_index)
        load_seconds = model.load_seconds
    else:
        load_seconds = 0.0
    check_model_language(model, config.language)
    batch_size = _resolve_batch_size(config, model)
    _check_option_names(config)
    _check_memory(config, model, batch_size)
    mark("prepare")
    started = time.perf_counter()
    audio = _as_audio(audio, keep_channels=config.channels != "mix", split=config.channels == "split")
    choice = _choose_channels(audio, config)
    used = Settings({**config.to_dict(), **model.describe(),
                     "batch_size": None if config.mode == "sequential" else batch_size})
    transcript = Transcript(
        segments=[],
        language=config.language,
        audio_seconds=audio.seconds,
        wall_seconds=0.0,
        load_seconds=load_seconds,
        config=used,
        audio_path=audio.path,
        warnings=list(audio.warnings) + ([choice.note] if choice.note else []),
    )
    if audio.is_silent:
        transcript.warnings.append(f"{audio.path or 'audio'}: silent (no sample above -60 dBFS), nothing to transcribe")
        transcript.wall_seconds = transcript.prepare_seconds = time.perf_counter() - started
        return transcript
    if choice.split:
        return _transcribe_channels(model, audio, config, batch_size, transcript, choice, progress, mark, started)
    first, last, finished = _attempts(model, audio, config, batch_size, transcript, progress, mark)
    transcript.prepare_seconds += first - started  # reading the audio
    transcript.retry_seconds = last - first
    transcript.wall_seconds = finished - started
    return transcript


def _attempts(model, audio, config, batch_size, transcript, progress, mark) -> tuple[float, float, float]:
    """Transcribe ``audio`` into ``transcript``, the batch halved on out-of-memory; returns when
    the first and the last attempt started and when it finished (``time.perf_counter()``)."""
    from whisperkit.core.batching import halving_on_out_of_memory

    attempts: list[float] = []  # when each attempt started

    def attempt(size: int | None) -> float:
        attempts.append(time.perf_counter())
        return _run(model, audio, config, size, transcript, progress, attempts[-1], mark)

    def retry(size: int) -> None:  # this transcript's own snapshot, with the batch size that goes on
        transcript.config = transcript.config.replace(batch_size=size)
        mark("retry")

    if config.mode == "batched":
        finished = halving_on_out_of_memory(attempt, batch_size, device=model.device, retries=transcript.batch_retries,
                                            on_retry=retry)
    else:
        finished = halving_on_out_of_memory(attempt, None, device=model.device)
    return attempts[0], attempts[-1], finished


def _choose_channels(audio: Audio, config: Config) -> ChannelChoice:
    """Mix or split ``audio``'s channels as ``config.channels`` says (a mono file: nothing to split)."""
    channels = audio.channels if audio.channels is not None else audio.samples.reshape(1, -1)
    return choose_for(config.channels, channels, config.channel_names, audio.path or "audio")


def _transcribe_channels(model, audio, config, batch_size, transcript, choice, progress, mark, started) -> Transcript:
    """Each channel of ``choice`` transcribed on its own into ``transcript``: its segments
    named by channel and merged in time order, the phases' seconds summed over the channels."""
    segments: list[Segment] = []
    spans: list = []
    previous = started
    finished = started
    for index, name in zip(choice.indices, choice.names):
        part = Transcript(segments=[], language=config.language, audio_seconds=audio.seconds, wall_seconds=0.0,
                          config=transcript.config, audio_path=audio.path)
        channel = Audio(samples=audio.channels[index], path=f"{audio.path or 'audio'} ({name})")
        size = transcript.config.get("batch_size") or batch_size  # smaller after an out-of-memory retry
        first, last, finished = _attempts(model, channel, config, size, part, progress, mark)
        transcript.config = part.config  # the next channel starts from the batch size that fitted
        transcript.prepare_seconds += part.prepare_seconds + first - previous
        transcript.decode_seconds += part.decode_seconds
        transcript.retry_seconds += last - first
        transcript.batch_retries.extend(part.batch_retries)
        transcript.language = transcript.language or part.language
        if part.chunks is not None:
            transcript.chunks = (transcript.chunks or 0) + part.chunks
        spans.extend(part.chunk_spans or [])
        segments.extend(Segment(s.start, s.end, s.text, name) for s in part.segments)
        previous = finished
    order = {name: number for number, name in enumerate(choice.names)}
    transcript.segments = sorted(segments, key=lambda s: (s.start, order[s.channel]))
    transcript.chunk_spans = spans if transcript.chunks is not None else None
    transcript.channels = list(choice.names)
    transcript.wall_seconds = finished - started
    return transcript


def _run(model, audio, config, batch_size, transcript, progress, started, mark) -> float:
    """One attempt from ``started``: start the pipeline, read its segments, fill ``transcript`` in place.

    Its phase times are its own, so a failed attempt before it does not count in them. Returns
    when it finished (``time.perf_counter()``).
    """
    kwargs = dict(beam_size=config.beam_size, language=config.language, **config.options)
    try:
        if config.mode == "batched":
            from faster_whisper import BatchedInferencePipeline

            segments, info = BatchedInferencePipeline(model.whisper).transcribe(
                audio.samples, batch_size=batch_size, **kwargs
            )
            language = info.language
        elif config.segmentation == "batched":
            from whisperkit.core.chunking import transcribe_batched_chunks

            segments, language, transcript.chunk_spans = transcribe_batched_chunks(model.whisper, audio.samples, kwargs)
            transcript.chunks = len(transcript.chunk_spans)
        else:
            from whisperkit.core.chunking import flat_clip_timestamps

            kwargs["clip_timestamps"] = flat_clip_timestamps(kwargs.get("clip_timestamps", "0"))
            segments, info = model.whisper.transcribe(audio.samples, **kwargs)
            language = info.language
    except (TypeError, ValueError) as error:  # a setting faster-whisper refuses, of a kind not checked above
        raise ConfigError(f"faster-whisper refused the settings ({first_line(error)}); check the options") from None
    prepared = time.perf_counter()
    mark("decode")
    transcript.language = language
    transcript.segments, raw_spans = _read_segments(segments, audio, progress)
    if config.mode == "batched" and config.options.get("without_timestamps", True):
        transcript.chunks = len(raw_spans)
        transcript.chunk_spans = raw_spans
    finished = time.perf_counter()
    transcript.prepare_seconds = prepared - started
    transcript.decode_seconds = finished - prepared
    return finished


def _read_segments(segments, audio: Audio, progress: bool) -> tuple[list[Segment], list[list[float]]]:
    """Collect non-empty segments, advancing a progress bar in seconds of audio; also the
    ``[start, end]`` of every segment, empty ones included (seconds, rounded to 10 ms)."""
    from tqdm.auto import tqdm

    name = os.path.basename(audio.path) if audio.path else "audio"
    total = round(audio.seconds, 1)
    collected = []
    raw_spans = []
    with tqdm(total=total, unit="s", desc=name, disable=not progress, leave=False) as bar:
        for segment in segments:
            text = segment.text.strip()
            end = min(segment.end, audio.seconds)
            start = min(segment.start, end)
            raw_spans.append([round(start, 2), round(end, 2)])
            if text:
                collected.append(Segment(start=start, end=end, text=text))
            bar.update(max(0.0, round(end, 1) - bar.n))
        bar.update(total - bar.n)
    return collected, raw_spans


def _resolve_batch_size(config: Config, model: Model) -> int:
    if isinstance(config.batch_size, int):
        return config.batch_size
    from whisperkit.core.batching import recommend_for_model

    return recommend_for_model(model, beam_size=config.beam_size)


def _as_audio(audio: AudioSource, keep_channels: bool = False, split: bool = False) -> Audio:
    """A path, a pipe or a binary file object is decoded; anything else is checked as an array.
    ``keep_channels`` keeps each channel too (not for a file that has one, nor over 8: refused
    with ``split``, mixed otherwise)."""
    if isinstance(audio, Audio):
        return audio
    if isinstance(audio, (str, os.PathLike)) and keep_channels:
        count = count_channels(audio)
        if split:
            check_split_count(count, os.fspath(audio))
        keep_channels = 1 < count <= MAX_CHANNELS  # mono: decoded as it always was, once; auto mixes above 8
    if isinstance(audio, (str, os.PathLike)) or callable(getattr(audio, "read", None)):
        return load_audio(audio, keep_channels)  # type: ignore[arg-type]  # a file object, by its read()
    return audio_from_array(audio, keep_channels=keep_channels)


def _check_option_names(config: Config) -> None:
    """Refuse options faster-whisper's ``transcribe`` for this mode does not take, naming close ones."""
    if not config.options:
        return
    import difflib
    import inspect

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    function = BatchedInferencePipeline.transcribe if config.mode == "batched" else WhisperModel.transcribe
    known = [name for name in inspect.signature(function).parameters if name not in ("self", "audio")]
    for name in config.options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
            raise ConfigError(f"unknown option {name!r} for {config.mode} transcription; {hint}")


def _check_memory(config: Config, model: Model, batch_size: int) -> None:
    """Refuse, before it starts, a CPU run whose estimated working memory exceeds the free memory.

    The estimate is :func:`whisperkit.core.batching.per_item_mb` per batch item (beam or best_of
    candidates included), for a model whose name gives its size. On a GPU a batch that does not
    fit is retried smaller instead.
    """
    from whisperkit.core.batching import names_an_architecture, per_item_mb

    if model.device != "cpu" or not names_an_architecture(model.name):  # no estimate for an unknown model
        return
    import psutil


    items = batch_size if config.mode == "batched" else 1
    candidates = max(config.beam_size, config.options.get("best_of", 1))
    needed_mb = items * per_item_mb(model.name, model.compute_type, candidates, device=model.device)
    free_mb = psutil.virtual_memory().available / 2**20
    if needed_mb > free_mb:
        raise ConfigError(
            f"batch size {items} with beam {candidates} needs about {needed_mb:.0f} MiB for {model.name} "
            f"(estimate), but {free_mb:.0f} MiB of memory are free; use a smaller batch or beam size"
        )


def _no_mark(label: str) -> None:
    pass
