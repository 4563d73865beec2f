"""The last stage of the corpus pipeline: each file's outputs, and the manifest of the run.

Every output is written atomically (a temporary file, then a rename) as soon as its file is
complete, so a run stopped at any moment leaves whole files or none. ``DIR/manifest.json``
(:mod:`~whisperkit.core.corpus.manifest`) records the configuration and each file's status;
a rerun with the same configuration skips the files it lists as done.

A run never replaces a file whisperkit did not write. Before any work (:func:`check_outputs`,
again when the folder is taken, :func:`open_outputs`) it refuses: an output folder that is a
file or cannot be written; an output that would replace an input, the manifest, or a file the
manifest does not record (the user's own ``notes.txt`` beside ``notes.wav`` when the output
folder is the input folder); an output blocked by a folder; and an output name longer than
file names may be (255 bytes). A write that fails during the run (a full disk) fails that file
only, with the reason; the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from whisperkit.core.corpus.manifest import MANIFEST, Manifest, fingerprint
from whisperkit.core.corpus.sources import check_collisions, output_paths
from whisperkit.core.corpus.stages import Source
from whisperkit.core.output_formats import FORMATS, output_formats, render
from whisperkit.core.transcription import Transcript
from whisperkit.errors import ConfigError, WhisperkitError
from whisperkit.files import NAME_MAX_BYTES, temporary_name, write_text_atomic

__all__ = ["FORMATS", "MANIFEST", "Manifest", "check_folder", "check_outputs", "check_paths", "open_outputs",
           "output_formats", "render", "shown", "write_file", "write_outputs"]
SHOWN = 3  # files named in a refusal; the rest are counted



def write_outputs(output_dir: str, source: Source, transcript: Transcript, formats: tuple[str, ...]) -> list[str]:
    """Write ``transcript`` in each of ``formats`` to ``DIR/<name>.<format>``; returns the paths."""
    paths = output_paths(output_dir, source, formats)
    for fmt, path in paths.items():
        write_text_atomic(path, render(transcript, fmt))
    return list(paths.values())


def check_outputs(found: list[Source], output_dir: str | os.PathLike | None, formats: tuple[str, ...]) -> None:
    """Refuse, before any work, the output problems of the module notes (ConfigError, one line)."""
    if output_dir is None:
        return
    output_dir = os.fspath(output_dir)
    check_folder(output_dir)
    check_collisions(found)
    manifest = Manifest.read(output_dir) if os.path.isdir(output_dir) else None
    _check_paths(found, output_dir, formats, manifest)


def open_outputs(found: list[Source], output_dir: str | os.PathLike | None, config: dict, formats: tuple[str, ...],
                 resume: bool) -> tuple[Manifest | None, list[Source], list[str]]:
    """``(manifest or None, sources to do, paths skipped as done)`` for ``output_dir``: the folder
    is locked for this run (:meth:`Manifest.close` releases it; at once when nothing is left to do)."""
    if output_dir is None:
        return None, found, []
    output_dir = os.fspath(output_dir)
    check_folder(output_dir)
    check_collisions(found)
    manifest = Manifest.open(output_dir, config, overwrite=not resume)
    try:
        _check_paths(found, output_dir, formats, manifest)
        manifest.fingerprints = {source.name: fingerprint(source.path) for source in found}
        done = [resume and manifest.is_done(source, formats) for source in found]  # not resume: redo them all
    except BaseException:
        manifest.close(save=False)
        raise
    todo = [source for source, skip in zip(found, done) if not skip]
    if not todo:
        manifest.close()
    return manifest, todo, [source.path for source, skip in zip(found, done) if skip]


def write_file(manifest: Manifest, source: Source, transcript: Transcript, formats: tuple[str, ...],
               **details: object) -> str | None:
    """Write one file's outputs and its manifest entry; the reason (one line) when a write failed,
    recorded as the file's failure (the other files go on), else None."""
    manifest.record(source, "writing")  # from here its outputs are whisperkit's, even if the run stops
    try:
        write_outputs(manifest.output_dir, source, transcript, formats)
    except WhisperkitError as error:
        manifest.record(source, "failed", reason=str(error))
        return str(error)
    manifest.record(source, "done", **details)
    return None


def check_folder(output_dir: str) -> None:
    """The output folder is a folder (or can be made) and can be written, checked with a probe file."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f"output folder {output_dir} is a file, not a folder; name a folder")
    existing = output_dir
    while not os.path.isdir(existing):  # the nearest folder that exists: the new ones go in it
        parent = os.path.dirname(os.path.abspath(existing))
        if os.path.exists(existing) or parent == os.path.abspath(existing):
            raise ConfigError(f"cannot create the output folder {output_dir}: {existing} is not a folder")
        existing = parent
    probe = temporary_name(os.path.join(existing, "probe"))
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.remove(probe)
    except OSError as error:
        raise ConfigError(f"cannot write in {existing} ({error.strerror or error}), so not in the output folder "
                          f"{output_dir}; choose a folder you can write to") from None


def _check_paths(found: list[Source], output_dir: str, formats: tuple[str, ...], manifest: Manifest | None) -> None:
    foreign = check_paths(found, output_dir, formats, lambda source: manifest is not None and manifest.owns(source.name))
    if foreign:
        raise ConfigError(
            f"the output folder holds {shown(foreign)}, which whisperkit did not write (not in its {MANIFEST}); "
            "a run never replaces them: move them or choose another output folder")


def check_paths(found: list[Source], output_dir: str, formats: Sequence[str], replaceable: Callable[[Source], bool],
                reserved: tuple[str, ...] = (MANIFEST,)) -> list[str]:
    """Refuse (ConfigError, one line) an output of ``found`` in ``output_dir`` that would replace
    an input or a ``reserved`` file of the folder, one whose folder is a file, one blocked by a
    folder, and one whose name is too long; return the outputs that exist already where
    ``replaceable(source)`` is False, for the caller to refuse in its own words. Corpus mode and
    plain ``whisperkit transcribe --output-dir`` both check through it."""
    inputs = {os.path.realpath(source.path) for source in found}
    identities = {_identity(source.path) for source in found} - {None}  # a case-insensitive name, a hard link
    kept = {os.path.realpath(os.path.join(output_dir, name)) for name in reserved}
    existing: list[str] = []
    for source in found:
        for path in output_paths(output_dir, source, formats).values():
            _check_name(source, path)
            real = os.path.realpath(path)
            if real in inputs or (os.path.lexists(path) and _identity(path) in identities):
                raise ConfigError(f"{source.path}: its output {path} would replace an input file; choose "
                                  "another output folder")
            if real in kept:
                raise ConfigError(f"{source.path}: its output {path} would replace the run's manifest; rename "
                                  "the file (or pass the folder above it, so that its output goes in a subfolder)")
            parent = os.path.dirname(path)
            if os.path.lexists(parent) and not os.path.isdir(parent):
                raise ConfigError(f"{source.path}: its output {path} cannot be written, {parent} is a file; "
                                  "move it or choose another output folder")
            if os.path.isdir(path):
                raise ConfigError(f"{source.path}: its output {path} is blocked by a folder of that name; move "
                                  "it or choose another output folder")
            if os.path.lexists(path) and not replaceable(source):
                existing.append(path)
    return existing


def _identity(path: str) -> tuple[int, int] | None:
    """The file ``path`` names (device, inode), or None where there is none."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def shown(paths: list[str]) -> str:
    """The first ``SHOWN`` of ``paths``, and how many more: ``a, b, c and 4 more``."""
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(paths[:SHOWN]) + more


def _check_name(source: Source, path: str) -> None:
    name = os.path.basename(path)
    size = len(os.fsencode(name))
    if size > NAME_MAX_BYTES:
        raise ConfigError(f"{source.path}: its output name {name[:40]}... is {size} bytes, over the "
                          f"{NAME_MAX_BYTES}-byte limit of file names; rename the file")
