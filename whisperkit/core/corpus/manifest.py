"""``DIR/manifest.json``: what a corpus run wrote into its output folder, kept true at every moment.

``{"config": {...}, "files": {name: {"path", "status", "size_bytes", "mtime_ns", ...}}}``:
``config`` holds the settings that change what is written; each file's entry its input path,
the input's size and modification time when it was read (so an input replaced since is done
again, not skipped), and its status: ``done``, ``failed`` (with the reason) or ``writing`` (its
outputs were being written when the run stopped; it is done again).

Rewriting the whole manifest after every file would cost a corpus of N files N^2 / 2 entries
written; instead each change is appended at once, as one line, to the journal
``DIR/.manifest.journal``, and the manifest is rewritten (atomically) every
``SAVE_EVERY_SECONDS`` and at the end, when the journal is emptied. Reading replays the journal
over the manifest, so a run stopped at any moment (SIGKILL too) leaves the truth, whole lines
only: a line cut short by the stop is ignored, and the ``writing`` line before it remains.

A manifest that cannot be read (not JSON, not UTF-8, hand-edited into another shape) is
refused with one line naming what is wrong, never silently replaced: it is the record of which
files in the folder whisperkit wrote (see :mod:`~whisperkit.core.corpus.outputs`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

from whisperkit.core.corpus.stages import Source
from whisperkit.errors import ConfigError, WhisperkitError
from whisperkit.files import release_lock, take_lock, write_bytes_atomic

MANIFEST = "manifest.json"
JOURNAL = ".manifest.journal"
LOCK = ".whisperkit-outputs.lock"  # held while a run writes into the folder
SAVE_EVERY_SECONDS = 30.0  # the manifest is rewritten at most this often while a run goes on
STATUSES = ("done", "failed", "writing", "outdated")


def fingerprint(path: str) -> dict:
    """``{"size_bytes", "mtime_ns"}`` of the file at ``path`` ({} when it cannot be read)."""
    try:
        status = os.stat(path)
    except OSError:
        return {}
    return {"size_bytes": status.st_size, "mtime_ns": status.st_mtime_ns}


class Manifest:
    """The manifest of one output folder; see the module notes. ``files`` maps each output name
    (``Source.name``) to its entry."""

    def __init__(self, output_dir: str, config: dict, files: dict | None = None) -> None:
        self.output_dir = output_dir
        self.config = config
        self.files: dict[str, dict] = files or {}
        self.fingerprints: dict[str, dict] = {}  # name -> the input's fingerprint when this run started
        self._saved_at = time.monotonic()
        self._journal: int | None = None  # file descriptor, open while the run holds the folder
        self._locked = False
        self._guard = threading.Lock()

    @property
    def path(self) -> str:
        return os.path.join(self.output_dir, MANIFEST)

    @property
    def journal_path(self) -> str:
        return os.path.join(self.output_dir, JOURNAL)

    @property
    def lock_path(self) -> str:
        return os.path.join(self.output_dir, LOCK)

    @classmethod
    def read(cls, output_dir: str) -> Manifest | None:
        """The folder's manifest with its journal replayed, or None where there is none;
        :class:`ConfigError` naming the damage when it cannot be read."""
        manifest = cls(output_dir, {})
        if not os.path.lexists(manifest.path) and not os.path.lexists(manifest.journal_path):
            return None
        if os.path.lexists(manifest.path):
            manifest.config, manifest.files = _parse(manifest.path)
        for entry in _journal_entries(manifest.journal_path):
            manifest.files[entry.pop("name")] = entry
        return manifest

    @classmethod
    def open(cls, output_dir: str, config: dict, overwrite: bool = False) -> Manifest:
        """The folder's manifest for a run with ``config``, the folder locked for it.

        Settings other than the saved ones are a :class:`ConfigError` naming them, unless
        ``overwrite``: then each entry made with other settings becomes ``outdated`` (its
        outputs are still whisperkit's, to be redone). Call :meth:`close` when the run ends.
        """
        manifest = cls(output_dir, config)
        try:
            os.makedirs(output_dir, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot create the output folder {output_dir}: {error.strerror or error}; "
                              "choose a folder you can write to") from None
        take_lock(manifest.lock_path, "corpus run", ConfigError)
        manifest._locked = True
        try:
            saved = cls.read(output_dir)
            if saved is not None and saved.config != config:
                changed = sorted(key for key in set(config) | set(saved.config)
                                 if config.get(key) != saved.config.get(key))
                if not overwrite:
                    raise ConfigError(
                        f"{output_dir} holds outputs made with other settings ({', '.join(changed)} differ); "
                        "use --overwrite (overwrite=True) to redo them, or another output folder")
                for entry in saved.files.values():
                    if entry.get("status") == "done":
                        entry["status"] = "outdated"
            if saved is not None:
                manifest.files = saved.files
            manifest._journal = os.open(manifest.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            manifest.save()  # the config on disk from the start: a journal never stands without it
        except BaseException:
            manifest.close(save=False)
            raise
        return manifest

    def owns(self, name: str) -> bool:
        """True when whisperkit wrote (or was writing) the outputs of ``name`` into this folder."""
        return name in self.files

    def is_done(self, source: Source, formats: tuple[str, ...]) -> bool:
        """True when ``source`` was done from the same path, from the same file (size and
        modification time, where recorded), and all its outputs are there."""
        from whisperkit.core.corpus.sources import output_paths

        entry = self.files.get(source.name)
        if not entry or entry.get("status") != "done" or entry.get("path") != os.path.abspath(source.path):
            return False
        if "size_bytes" in entry or "mtime_ns" in entry:  # entries of older manifests have neither
            now = self.fingerprints.get(source.name) or fingerprint(source.path)
            if {key: entry.get(key) for key in now} != now or not now:
                return False
        return all(os.path.exists(path) for path in output_paths(self.output_dir, source, formats).values())

    def record(self, source: Source, status: str, **details: object) -> None:
        """Note ``source``'s status: at once in the journal, in the manifest at the next save."""
        entry = {"path": os.path.abspath(source.path), "status": status,
                 **(self.fingerprints.get(source.name) or {}), **details}
        with self._guard:
            self.files[source.name] = entry
            if self._journal is not None:
                os.write(self._journal, (_dumps({"name": source.name, **entry}, None) + "\n").encode(
                    "utf-8", errors="backslashreplace"))
        if time.monotonic() - self._saved_at >= SAVE_EVERY_SECONDS:
            self.save()

    def save(self) -> None:
        """Write the manifest atomically, then empty the journal it now holds."""
        with self._guard:
            data = {"config": self.config, "files": self.files}
            write_bytes_atomic(self.path, _dumps(data, 1).encode("utf-8", errors="backslashreplace"))
            if self._journal is not None:
                os.ftruncate(self._journal, 0)
            self._saved_at = time.monotonic()

    def close(self, save: bool = True) -> None:
        """The run is over: save (with ``save``), remove the journal, release the folder."""
        try:
            if save:
                self.save()
        finally:
            if self._journal is not None:
                os.close(self._journal)
                self._journal = None
                if save or _is_empty(self.journal_path):  # emptied by the save: nothing in it is lost
                    with contextlib.suppress(OSError):
                        os.remove(self.journal_path)
            if self._locked:
                release_lock(self.lock_path)
                self._locked = False


def _is_empty(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def _dumps(data: dict, indent: int | None) -> str:
    """JSON; file names that are not UTF-8 (surrogate escapes) become ``\\udcXX`` escapes once
    encoded with ``backslashreplace``, which JSON reads back as the same names."""
    return json.dumps(data, indent=indent, ensure_ascii=False)


def _parse(path: str) -> tuple[dict, dict[str, dict]]:
    """``(config, files)`` of a manifest; ConfigError naming what is wrong with it."""
    def damaged(why: str) -> ConfigError:
        return ConfigError(f"{path}: damaged, {why}; it records which files in this folder whisperkit wrote: "
                           "restore or fix it, or remove it together with those outputs, or choose another "
                           "output folder")

    try:
        with open(path, "rb") as handle:
            saved = json.loads(handle.read().decode("utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the manifest ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise damaged("not UTF-8 text") from None
    except ValueError as error:
        raise damaged(f"not valid JSON ({str(error).splitlines()[0]})") from None
    if not isinstance(saved, dict):
        raise damaged(f"it is a JSON {type(saved).__name__}, not an object with config and files")
    config, files = saved.get("config"), saved.get("files")
    for key, value in (("config", config), ("files", files)):
        if not isinstance(value, dict):
            raise damaged(f"its {key} is {_kind(value)}, not an object")
    assert isinstance(config, dict) and isinstance(files, dict)  # for mypy: checked just above
    for name, entry in files.items():
        problem = _entry_problem(entry)
        if problem:
            raise damaged(f"its entry for {name!r} {problem}")
    return config, files


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return f"is {_kind(entry)}, not an object"
    if not isinstance(entry.get("path"), str):
        return f"has path {_kind(entry.get('path'))}, not a string"
    if entry.get("status") not in STATUSES:
        return f"has status {entry.get('status')!r}, not one of {', '.join(STATUSES)}"
    return None


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _journal_entries(path: str) -> list[dict]:
    """The journal's whole, well-formed lines (a line cut short by a stop is left out)."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().split(b"\n")
    except FileNotFoundError:
        return []
    except OSError as error:
        raise WhisperkitError(f"{path}: cannot read the manifest's journal ({error.strerror or error})") from None
    entries = []
    for line in lines:
        try:
            entry = json.loads(line.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError is one
            continue
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and _entry_problem(entry) is None:
            entries.append(entry)
    return entries
