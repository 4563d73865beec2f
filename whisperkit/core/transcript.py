"""What a transcription returns: :class:`Transcript` (segments, timings, the settings it ran
with as a frozen :class:`~whisperkit.core.config.Settings`, and with ``monitor=True`` its
:class:`~whisperkit.measure.utilization.Utilization`) and its formats (txt, json, SubRip,
WebVTT); :class:`Segment`, one piece of it, named by its channel where the audio was
transcribed channel by channel (see :mod:`whisperkit.core.channels`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from whisperkit.core.config import Settings
from whisperkit.measure.utilization import HoldsUtilization, Utilization


@dataclass
class Segment:
    """A piece of the transcript; ``start`` and ``end`` in seconds from the start of the audio;
    ``channel``, in a transcript split by channel, the name of the channel (the speaker) it came from."""

    start: float
    end: float
    text: str
    channel: str | None = None

    def to_dict(self) -> dict:
        """Plain values for JSON (``channel`` only where there is one)."""
        values: dict = {"start": self.start, "end": self.end, "text": self.text}
        if self.channel is not None:
            values["channel"] = self.channel
        return values

    def labelled(self) -> str:
        """The text, after ``channel: `` where there is a channel (txt and srt)."""
        return self.text if self.channel is None else f"{self.channel}: {self.text}"


@dataclass
class Transcript(HoldsUtilization):
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
    ``config`` is the snapshot of the settings it ran with (the config, the model's placement, and
    ``batch_size`` the one that decoded it: smaller than asked after an out-of-memory retry),
    read like a dict and never changed. ``utilization`` is what the sampler recorded with
    ``monitor=True`` (None without); ``timeline`` and ``marks`` are its two tables.
    ``channels`` names the channels transcribed apart (each segment's ``channel`` is one of them;
    segments in time order across channels); empty where the audio was mono or mixed.
    """

    segments: list[Segment]
    language: str | None
    audio_seconds: float
    wall_seconds: float
    prepare_seconds: float = 0.0
    decode_seconds: float = 0.0
    load_seconds: float = 0.0
    retry_seconds: float = 0.0
    config: Settings = field(default_factory=Settings)
    audio_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    batch_retries: list[dict] = field(default_factory=list)
    chunks: int | None = None
    chunk_spans: list | None = None
    channels: list[str] = field(default_factory=list)
    utilization: Utilization | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, Settings):  # a plain dict (JSON, a caller): its own frozen copy
            self.config = Settings(self.config)

    @property
    def text(self) -> str:
        """The whole transcript as one string (split by channel: every channel's, in time order)."""
        return " ".join(segment.text for segment in self.segments)

    def channel_text(self, channel: str) -> str:
        """The words of one ``channel`` (one of ``channels``) as one string."""
        return " ".join(segment.text for segment in self.segments if segment.channel == channel)

    @property
    def rtfx(self) -> float:
        """Real-time factor: seconds of audio transcribed per wall-clock second (higher is faster)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        """Plain values for JSON: text, segments, timings, config, warnings (no utilization)."""
        return {
            "text": self.text,
            "segments": [segment.to_dict() for segment in self.segments],
            "language": self.language,
            "audio_seconds": self.audio_seconds,
            "wall_seconds": self.wall_seconds,
            "rtfx": self.rtfx,
            "load_seconds": self.load_seconds,
            "prepare_seconds": self.prepare_seconds,
            "decode_seconds": self.decode_seconds,
            "retry_seconds": self.retry_seconds,
            "config": self.config.to_dict(),
            "audio_path": self.audio_path,
            "warnings": self.warnings,
            "batch_retries": self.batch_retries,
            "chunks": self.chunks,
            "chunk_spans": self.chunk_spans,
            **({"channels": self.channels} if self.channels else {}),
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
        """SubRip subtitles: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` (split by channel:
        each line starts with its channel, ``left: ...``)."""
        cues = [
            f"{number}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.labelled()}\n"
            for number, s in enumerate(self.segments, start=1)
        ]
        return "\n".join(cues)

    def to_vtt(self) -> str:
        """WebVTT subtitles: a ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues (split
        by channel: the channel as the cue's voice, ``<v left>...``)."""
        cues = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{_voice(s)}\n" for s in self.segments]
        return "\n".join(["WEBVTT\n", *cues])

    def to_txt(self) -> str:
        """The text, one segment a line (split by channel: after its channel, ``left: ...``)."""
        return "".join(f"{segment.labelled()}\n" for segment in self.segments)


def _voice(segment: Segment) -> str:
    """A cue's text, in a WebVTT voice span where the segment has a channel (names are checked
    to hold no ``<``, ``>`` or ``&``)."""
    return segment.text if segment.channel is None else f"<v {segment.channel}>{segment.text}"


def _timestamp(seconds: float, decimal_marker: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole_seconds, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole_seconds:02d}{decimal_marker}{milliseconds:03d}"
