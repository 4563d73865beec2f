"""Which files a corpus run transcribes, and where each one's outputs go (and what to do with
their channels: ``Source.channels``).

A PATH is a file, a folder (searched recursively for audio and video files), or ``@list.txt``
(one path per line; blank lines and ``#`` comments skipped; relative paths from the list's
folder). A file found in a folder PATH writes ``DIR/<its path relative to PATH, extension
dropped>.<format>``; a file named directly writes ``DIR/<name without extension>.<format>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from whisperkit.core.corpus.stages import Source
from whisperkit.errors import ConfigError

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
