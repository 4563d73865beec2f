"""One entry point for sequential and batched transcription, and the Transcript it returns.

``mode="sequential"`` calls ``WhisperModel.transcribe``: one 30 s window at a time, each
decoded with the previous text as its prompt. ``mode="batched"`` calls
``BatchedInferencePipeline(model).transcribe(batch_size=...)``: Silero VAD cuts the audio into
speech chunks of up to 30 s, and ``batch_size`` chunks are decoded together in one model call.

Both calls do their CPU-only preparation (decoding the file, VAD, log-mel features) before
they return, and decode lazily while their segments are read. whisperkit times the two parts
separately: ``prepare_seconds`` until the call returns, ``decode_seconds`` for the rest.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from whisperkit.core.audio import Audio, load_audio
from whisperkit.core.config import Config
from whisperkit.core.models import Model, load_model
from whisperkit.errors import DeviceError, WhisperkitError, first_line
from whisperkit.measure.cuda import is_out_of_memory

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
    failed and the error), ``warnings`` what was wrong with the input but did not stop the run.
    ``chunks`` is the number of speech chunks a batched run decoded (known when it runs
    without timestamps, its default: one segment per chunk; else None); a batch size above it
    changes nothing. ``timeline`` and ``marks`` are the utilization samples with ``monitor=True``.
    """

    segments: list[Segment]
    language: str | None
    audio_seconds: float
    wall_seconds: float
    prepare_seconds: float = 0.0
    decode_seconds: float = 0.0
    load_seconds: float = 0.0
    config: dict = field(default_factory=dict)
    audio_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    batch_retries: list[dict] = field(default_factory=list)
    chunks: int | None = None
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
            "config": self.config,
            "audio_path": self.audio_path,
            "warnings": self.warnings,
            "batch_retries": self.batch_retries,
            "chunks": self.chunks,
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
      audio: a path to any audio or video file PyAV can read, or a 16 kHz mono float32 array.
      model: a :class:`Model` from :func:`load_model`, a faster-whisper ``WhisperModel``, or a
        name or folder to load (with ``device``, ``compute_type``, ``num_workers``,
        ``cpu_threads``); None is the bundled tiny.en.
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
    if model is not None and not isinstance(model, (Model, str, os.PathLike)):
        model = _wrap_whisper_model(model)
    name: str | None
    if isinstance(model, Model):  # already loaded: its placement is the one used
        name, device, compute_type = model.name, model.device, model.compute_type
        num_workers, cpu_threads = model.num_workers, model.cpu_threads
    else:
        name = None if model is None else os.fspath(model)
    config = Config(
        model=name,
        device=device,
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
    mark = sampler.mark if sampler is not None else _no_mark
    mark("load")
    if model is None:
        model = load_model(config.model, config.device, config.compute_type, config.num_workers, config.cpu_threads)
        load_seconds = model.load_seconds
    else:
        load_seconds = 0.0
    batch_size = _resolve_batch_size(config, model)
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
    while True:
        try:
            _run(model, audio, config, batch_size, transcript, progress, started, mark)
            break
        except RuntimeError as error:
            if config.mode != "batched" or not is_out_of_memory(error):
                raise
            if batch_size == 1:
                raise DeviceError(
                    f"out of {model.device} memory even at batch size 1 ({first_line(error)}); "
                    "use a smaller model or compute type"
                ) from None
            transcript.batch_retries.append({"batch_size": batch_size, "error": first_line(error)})
            batch_size = max(1, batch_size // 2)
            transcript.config["batch_size"] = batch_size
            mark("retry")
    return transcript


def _run(model, audio, config, batch_size, transcript, progress, started, mark) -> None:
    """One attempt: start the pipeline, read its segments, fill ``transcript`` in place."""
    kwargs = dict(beam_size=config.beam_size, language=config.language, **config.options)
    if config.mode == "batched":
        from faster_whisper import BatchedInferencePipeline

        segments, info = BatchedInferencePipeline(model.whisper).transcribe(
            audio.samples, batch_size=batch_size, **kwargs
        )
    else:
        segments, info = model.whisper.transcribe(audio.samples, **kwargs)
    prepared = time.perf_counter()
    mark("decode")
    transcript.language = info.language
    transcript.segments, raw_count = _read_segments(segments, audio, progress)
    if config.mode == "batched" and config.options.get("without_timestamps", True):
        transcript.chunks = raw_count
    finished = time.perf_counter()
    transcript.prepare_seconds = prepared - started
    transcript.decode_seconds = finished - prepared
    transcript.wall_seconds = finished - started


def _read_segments(segments, audio: Audio, progress: bool) -> tuple[list[Segment], int]:
    """Collect non-empty segments, advancing a progress bar in seconds of audio; also count all."""
    from tqdm.auto import tqdm

    name = os.path.basename(audio.path) if audio.path else "audio"
    total = round(audio.seconds, 1)
    collected = []
    count = 0
    with tqdm(total=total, unit="s", desc=name, disable=not progress, leave=False) as bar:
        for segment in segments:
            count += 1
            text = segment.text.strip()
            end = min(segment.end, audio.seconds)
            if text:
                collected.append(Segment(start=min(segment.start, end), end=end, text=text))
            bar.update(max(0.0, round(end, 1) - bar.n))
        bar.update(total - bar.n)
    return collected, count


def _resolve_batch_size(config: Config, model: Model) -> int:
    if isinstance(config.batch_size, int):
        return config.batch_size
    from whisperkit.core.batching import recommend_for_model

    return recommend_for_model(model, beam_size=config.beam_size)


def _as_audio(audio) -> Audio:
    if isinstance(audio, Audio):
        return audio
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio)
    import numpy as np

    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise WhisperkitError(
            f"audio array must be one-dimensional 16 kHz mono, got shape {samples.shape}; "
            f"average the channels first"
        )
    return Audio(samples=samples)


def _wrap_whisper_model(whisper) -> Model:
    """Describe a faster-whisper ``WhisperModel`` the user loaded themselves."""
    inner = getattr(whisper, "model", None)
    if inner is None or not hasattr(whisper, "transcribe"):
        raise WhisperkitError(
            f"model must be a name, a folder, a whisperkit Model or a faster_whisper.WhisperModel, "
            f"got {type(whisper).__name__}"
        )
    return Model(
        whisper=whisper,
        name="(user-loaded WhisperModel)",
        path="",
        device=inner.device,
        compute_type=inner.compute_type,
        num_workers=inner.num_workers,
    )



def _timestamp(seconds: float, decimal_marker: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole_seconds, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole_seconds:02d}{decimal_marker}{milliseconds:03d}"


def _no_mark(label: str) -> None:
    pass
