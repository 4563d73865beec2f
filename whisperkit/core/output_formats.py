"""The output formats of a transcript, defined once: their names, how each is rendered, where
each is written. The one-file ``transcribe --output-dir`` and the corpus pipeline both read this."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from whisperkit.errors import ConfigError

if TYPE_CHECKING:
    from whisperkit.core.transcription import Transcript

FORMATS = ("txt", "json", "srt", "vtt")


def output_formats(output_format: str) -> tuple[str, ...]:
    """``"all"`` or one of txt, json, srt, vtt, as a tuple of formats."""
    if output_format == "all":
        return FORMATS
    if output_format not in FORMATS:
        raise ConfigError(f"unknown output format {output_format!r}; expected one of: {', '.join(FORMATS)}, all")
    return (output_format,)


def render(transcript: Transcript, fmt: str) -> str:
    """``transcript`` as txt, json, srt or vtt text."""
    renderers = {"txt": transcript.to_txt, "json": transcript.to_json, "srt": transcript.to_srt,
                 "vtt": transcript.to_vtt}
    return renderers[fmt]()


def output_path(output_dir: str, name: str, fmt: str) -> str:
    """``DIR/<name>.<fmt>``: where the output of a file named ``name`` (no extension) goes."""
    return os.path.join(output_dir, f"{name}.{fmt}")


__all__ = ["FORMATS", "output_formats", "output_path", "render"]
