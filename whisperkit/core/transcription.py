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
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from whisperkit.core.audio import Audio, audio_from_array, load_audio
from whisperkit.core.config import Config
from whisperkit.core.models import Model, check_model_language, load_model
from whisperkit.core.models import wrap_whisper_model as _wrap_whisper_model  # corpus.transcribe imports it from here
from whisperkit.errors import ConfigError, first_line

if TYPE_CHECKING:
    from whisperkit.core.audio import AudioSource
    from whisperkit.measure.sampler import Sampler


@dataclass
class Segment:
    """A piece of the transcript; ``start`` and ``end`` in seconds from the start of the audio."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    """What a transcription produced, and how long each part took.

    Times are wall-clock seconds. ``wall_seconds`` runs from reading the audio to the last
    segment and leaves out model loading (``load_seconds``, 0 when the model was already
    loaded), so ``rtfx = audio_seconds / wall_seconds`` is the speed of transcription itself.
    ``batch_retries`` lists each out-of-memory retry of a batched run (the batch size that
    failed and the error); the phase times count only the attempt that succeeded, and the
    failed attempts' time is ``retry_seconds`` (so prepare + decode + retry = wall). ``warnings`` what was wrong with the input but did not stop the run.
    ``chunks`` is the number of speech chunks a batched run decoded (known when it runs
    without timestamps, its default: one segment per chunk; else None); a batch size above it
    changes nothing. ``chunk_spans`` are those chunks' ``[start, end]`` in seconds of the audio
    (for a batched run read from its segments, for a sequential run with
    ``segmentation="batched"`` the chunks it was given; else None).
    ``timeline`` and ``marks`` are the utilization samples with ``monitor=True``.
    """

    segments: list[Segment]
    language: str | None
    audio_seconds: float
    wall_seconds: float
    prepare_seconds: float = 0.0
    decode_seconds: float = 0.0
    load_seconds: float = 0.0
    retry_seconds: float = 0.0
    config: dict = field(default_factory=dict)
    audio_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    batch_retries: list[dict] = field(default_factory=list)
    chunks: int | None = None
    chunk_spans: list | None = None
    timeline: object = None  # pandas.DataFrame when monitored
    marks: object = None  # pandas.DataFrame when monitored

    @property
    def text(self) -> str:
        """The whole transcript as one string."""
        return " ".join(segment.text for segment in self.segments)

    @property
    def rtfx(self) -> float:
        """Real-time factor: seconds of audio transcribed per wall-clock second (higher is faster)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        """Plain values for JSON: text, segments, timings, config, warnings (no timeline)."""
        return {
            "text": self.text,
            "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in self.segments],
            "language": self.language,
            "audio_seconds": self.audio_seconds,
            "wall_seconds": self.wall_seconds,
            "rtfx": self.rtfx,
            "load_seconds": self.load_seconds,
            "prepare_seconds": self.prepare_seconds,
            "decode_seconds": self.decode_seconds,
            "retry_seconds": self.retry_seconds,
            "config": self.config,
            "audio_path": self.audio_path,
            "warnings": self.warnings,
            "batch_retries": self.batch_retries,
            "chunks": self.chunks,
            "chunk_spans": self.chunk_spans,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Transcript:
        """The inverse of :meth:`to_dict` (text and rtfx are derived, so they are not read)."""
        values = {k: v for k, v in data.items() if k not in ("text", "rtfx", "segments")}
        return cls(segments=[Segment(**segment) for segment in data["segments"]], **values)

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_srt(self) -> str:
        """SubRip subtitles: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
        cues = [
            f"{number}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text}\n"
            for number, s in enumerate(self.segments, start=1)
        ]
        return "\n".join(cues)

    def to_vtt(self) -> str:
        """WebVTT subtitles: a ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
        cues = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text}\n" for s in self.segments]
        return "\n".join(["WEBVTT\n", *cues])

    def to_txt(self) -> str:
        """The text, one segment a line."""
        return "".join(f"{segment.text}\n" for segment in self.segments)


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
    progress: bool = True,
    monitor: bool = False,
    monitor_interval: float = 0.1,
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
    )
    loaded = model if isinstance(model, Model) else None
    if not monitor:
        return transcribe_config(audio, config, model=loaded, progress=progress)
    from whisperkit.measure.sampler import Sampler

    with Sampler(interval=monitor_interval) as sampler:
        transcript = transcribe_config(audio, config, model=loaded, progress=progress, sampler=sampler)
    transcript.timeline = sampler.timeline
    transcript.marks = sampler.marks
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
    audio = _as_audio(audio)
    used = {**config.to_dict(), **model.describe(), "batch_size": batch_size}
    if config.mode == "sequential":
        used["batch_size"] = None
    transcript = Transcript(
        segments=[],
        language=config.language,
        audio_seconds=audio.seconds,
        wall_seconds=0.0,
        load_seconds=load_seconds,
        config=used,
        audio_path=audio.path,
        warnings=list(audio.warnings),
    )
    if audio.is_silent:
        transcript.warnings.append(f"{audio.path or 'audio'}: silent (no sample above -60 dBFS), nothing to transcribe")
        transcript.wall_seconds = transcript.prepare_seconds = time.perf_counter() - started
        return transcript
    from whisperkit.core.batching import halving_on_out_of_memory

    attempts: list[float] = []  # when each attempt started

    def attempt(size: int | None) -> float:
        attempts.append(time.perf_counter())
        return _run(model, audio, config, size, transcript, progress, attempts[-1], mark)

    def retry(size: int) -> None:
        transcript.config["batch_size"] = size
        mark("retry")

    if config.mode == "batched":
        finished = halving_on_out_of_memory(attempt, batch_size, device=model.device, retries=transcript.batch_retries,
                                            on_retry=retry)
    else:
        finished = halving_on_out_of_memory(attempt, None, device=model.device)
    transcript.prepare_seconds += attempts[0] - started  # reading the audio
    transcript.retry_seconds = attempts[-1] - attempts[0]
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


def _as_audio(audio: AudioSource) -> Audio:
    """A path, a pipe or a binary file object is decoded; anything else is checked as an array."""
    if isinstance(audio, Audio):
        return audio
    if isinstance(audio, (str, os.PathLike)) or callable(getattr(audio, "read", None)):
        return load_audio(audio)  # type: ignore[arg-type]  # a file object, by its read()
    return audio_from_array(audio)


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


def _timestamp(seconds: float, decimal_marker: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole_seconds, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole_seconds:02d}{decimal_marker}{milliseconds:03d}"


def _no_mark(label: str) -> None:
    pass
