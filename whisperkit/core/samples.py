"""The speech samples shipped with whisperkit, with their reference texts.

Generated with flite from public-domain text (see ``data/generate.sh``), 16 kHz mono FLAC:
``gettysburg`` (79 s, voice slt) for long-form runs and ten short Aesop sentences
``aesop_01`` ... ``aesop_10`` (3-6 s, voices slt, rms and awb) for many-file runs.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(__file__).parent.parent / "data"
DEMO_SAMPLE = "gettysburg"


def sample_path(name: str = DEMO_SAMPLE) -> str:
    """Path of a bundled sample by name (``"gettysburg"``, ``"aesop_01"``, ...)."""
    path = DATA_DIR / f"{name}.flac"
    if not path.is_file():
        from whisperkit.errors import WhisperkitError

        raise WhisperkitError(f"no bundled sample {name!r}; expected one of: {', '.join(list_samples())}")
    return str(path)


def list_samples() -> list[str]:
    """Names of the bundled samples, sorted."""
    return sorted(path.stem for path in DATA_DIR.glob("*.flac"))


def short_clips() -> list[str]:
    """Paths of the ten short bundled clips, in order."""
    return [sample_path(name) for name in list_samples() if name.startswith("aesop_")]


def reference_text(audio_path: str | os.PathLike) -> str | None:
    """The reference transcript in a ``.txt`` beside the audio, or None where there is none."""
    path = Path(audio_path).with_suffix(".txt")
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None
