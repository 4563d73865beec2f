"""Which files a corpus run transcribes, where each one's outputs go, and the channel streams
of a file transcribed channel by channel (:func:`channel_pieces`).

A PATH is a file, a folder (searched recursively for audio and video files), or ``@list.txt``
(one path per line; blank lines and ``#`` comments skipped; relative paths from the list's
folder). A file found in a folder PATH writes ``DIR/<its path relative to PATH, extension
dropped>.<format>``; a file named directly writes ``DIR/<name without extension>.<format>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from whisperkit.core.audio import stream_audio
from whisperkit.core.corpus.stages import BLOCK_SECONDS, Piece, Source
from whisperkit.core.corpus.stages import _cut as cut
from whisperkit.core.corpus.stages import _silent as silent
from whisperkit.errors import ConfigError, WhisperkitError

if TYPE_CHECKING:
    import numpy as np

AUDIO_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .wma .aif .aiff .amr .caf .wv .ac3 "
    ".mp4 .m4v .mkv .mov .avi .webm .mpeg .mpg .ts .3gp .flv".split()
)


def find_sources(paths: str | os.PathLike | Iterable[str | os.PathLike], channels: str = "mix",
                 channel_names: tuple[str, ...] | None = None) -> list[Source]:
    """The files ``paths`` name, in order, each with its output name (see the module's docstring)
    and what to do with its channels (``channels``, ``channel_names``: see :class:`whisperkit.Config`).

    A path that does not exist is kept (it fails when read, and is reported with the others);
    a path named twice is kept once; a folder with no audio files and a missing ``@list`` are
    :class:`ConfigError`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[tuple[str, str]] = []
    for path in (os.fspath(entry) for entry in paths):
        found.extend(_expand(path))
    if not found:
        raise ConfigError("no files to transcribe; name audio files, folders or @list.txt files")
    unique: dict[str, tuple[str, str]] = {}
    for path, name in found:
        unique.setdefault(os.path.abspath(path), (path, name))
    names = None if channel_names is None else tuple(channel_names)
    return [Source(index, path, name, channels, names) for index, (path, name) in enumerate(unique.values())]


def _expand(path: str) -> list[tuple[str, str]]:
    if path.startswith("@"):
        return [pair for entry in _read_list(path[1:]) for pair in _expand(entry)]
    if os.path.isdir(path):
        files = _audio_files(path)
        if not files:
            raise ConfigError(f"{path}: no audio or video files in this folder (looked for {_extensions()})")
        return [(file, os.path.splitext(os.path.relpath(file, path))[0]) for file in files]
    return [(path, os.path.splitext(os.path.basename(path))[0])]


def _read_list(list_path: str) -> list[str]:
    try:
        with open(list_path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except OSError as error:
        raise ConfigError(f"@{list_path}: cannot read the list ({error.strerror or error}); check the path") from None
    folder = os.path.dirname(os.path.abspath(list_path))
    return [line if os.path.isabs(line) else os.path.join(folder, line)
            for line in lines if line and not line.startswith("#")]


def _audio_files(folder: str) -> list[str]:
    files: list[str] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(os.path.join(root, name) for name in sorted(names)
                     if not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS)
    return files


def check_collisions(sources: list[Source]) -> None:
    """:class:`ConfigError` when two files would write the same outputs."""
    seen: dict[str, str] = {}
    for source in sources:
        path, name = source.path, source.name
        key = os.path.normcase(name)
        if key in seen:
            raise ConfigError(
                f"{seen[key]} and {path} would both write {name}.<format>; "
                "pass their folder instead (outputs then mirror the subfolders), or rename one"
            )
        seen[key] = path


def _extensions() -> str:
    return " ".join(sorted(AUDIO_EXTENSIONS))


def output_paths(output_dir: str, source: Source, formats: Iterable[str]) -> dict[str, str]:
    """``{format: DIR/<name>.<format>}`` for ``source``."""
    return {fmt: os.path.join(output_dir, f"{source.name}.{fmt}") for fmt in formats}


def channel_pieces(source: Source, block_seconds: float = BLOCK_SECONDS) -> Iterator[Piece]:
    """A file of ``source.channels`` split or auto: mixed as ever where it is mono or ``auto``
    finds its channels nearly the same (:func:`whisperkit.core.channels.choose`, on levels of
    the whole file, decoded once for that), else each channel a stream of its own (decoded
    again for each channel, so that memory stays one block per reader), its pieces named by channel."""
    import dataclasses

    import numpy as np

    from whisperkit.core.audio import MAX_CHANNELS, count_channels
    from whisperkit.core.channels import choose

    count = count_channels(source.path)
    if count > MAX_CHANNELS and source.channels == "auto":
        count = 1  # more than whisperkit splits: mixed, as ever
    if count > 1 and source.channels == "auto":
        choice = choose("auto", *_file_levels(source.path, block_seconds), source.channel_names, source.path)
    else:  # split: every channel (a silent one is found as it is cut)
        choice = choose(source.channels, np.zeros((count, 0)), [1.0] * count, source.channel_names, source.path)
    notes = [choice.note] if choice.note else []
    if not choice.split:
        for piece in cut(source.index, stream_audio(source.path, block_seconds), block_seconds):
            yield dataclasses.replace(piece, warnings=piece.warnings + notes) if piece.last else piece
        return
    number, seconds, warnings, heard = 0, 0.0, [], 0
    for index, name in zip(choice.indices, choice.names):
        try:
            for piece in cut(source.index, stream_audio(source.path, block_seconds, channel=index), block_seconds):
                if piece.last:
                    seconds, warnings = max(seconds, piece.audio_seconds), piece.warnings
                    if not piece.seconds:  # the channel's end mark: one for the file comes after all channels
                        continue
                yield dataclasses.replace(piece, number=number, last=False, audio_seconds=0.0, warnings=[],
                                          channel=name)
                number += 1
            heard += 1
        except WhisperkitError as error:
            if str(error) != silent(None):
                raise
            notes.append(f"{source.path}: channel {name} is silent (no sample above -60 dBFS), nothing to transcribe")
    if not heard:
        raise WhisperkitError(silent(None))
    yield Piece(source.index, number, np.zeros(0, dtype=np.float32), (), last=True, audio_seconds=seconds,
                warnings=warnings + notes)


def _file_levels(path: str, block_seconds: float) -> tuple[np.ndarray, list[float]]:
    """Each channel's frame levels (:func:`whisperkit.core.channels.frame_levels`) and peak over the whole file."""
    import numpy as np

    from whisperkit.core.channels import frame_levels

    levels, peaks = [], None
    for block in stream_audio(path, block_seconds, channel="all"):
        levels.append(frame_levels(block.samples))
        block_peaks = np.abs(block.samples).max(axis=1, initial=0.0)
        peaks = block_peaks if peaks is None else np.maximum(peaks, block_peaks)
    return np.concatenate(levels, axis=1), [float(peak) for peak in (peaks if peaks is not None else [])]
