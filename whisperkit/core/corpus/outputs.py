"""The last stage of the corpus pipeline: each file's outputs, and the manifest of the run.

Every output is written atomically (a temporary file, then a rename) as soon as its file is
complete, so a run stopped at any moment leaves whole files or none. ``DIR/manifest.json``
records the configuration and each file's status (``done`` or ``failed``, with the reason);
a rerun with the same configuration skips the files it lists as done.
"""

from __future__ import annotations

import json
import os
import time

from whisperkit.core.corpus.sources import output_paths
from whisperkit.core.corpus.stages import Source
from whisperkit.core.output_formats import render
from whisperkit.core.transcription import Transcript
from whisperkit.errors import ConfigError
from whisperkit.files import write_text_atomic

MANIFEST = "manifest.json"
SAVE_EVERY_SECONDS = 1.0  # the manifest is rewritten at most this often while a run goes on


def write_outputs(output_dir: str, source: Source, transcript: Transcript, formats: tuple[str, ...]) -> list[str]:
    """Write ``transcript`` in each of ``formats`` to ``DIR/<name>.<format>``; returns the paths."""
    paths = output_paths(output_dir, source, formats)
    for fmt, path in paths.items():
        write_text_atomic(path, render(transcript, fmt))
    return list(paths.values())


class Manifest:
    """``DIR/manifest.json``: ``{"config": {...}, "files": {name: {"path", "status", ...}}}``.

    ``config`` holds the settings that change what is written (model, decoding, packing, formats);
    a folder written with other settings cannot be resumed: :meth:`open` raises, naming them.
    """

    def __init__(self, output_dir: str, config: dict, files: dict | None = None) -> None:
        self.output_dir = output_dir
        self.config = config
        self.files: dict[str, dict] = files or {}
        self._saved_at = 0.0

    @property
    def path(self) -> str:
        return os.path.join(self.output_dir, MANIFEST)

    @classmethod
    def open(cls, output_dir: str, config: dict, overwrite: bool = False) -> Manifest:
        """The folder's manifest (a new one where there is none, or with ``overwrite``)."""
        manifest = cls(output_dir, config)
        if overwrite or not os.path.exists(manifest.path):
            return manifest
        try:
            with open(manifest.path, encoding="utf-8") as handle:
                saved = json.load(handle)
            saved_config, files = saved["config"], saved["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return manifest  # unreadable: start again
        changed = sorted(key for key in set(config) | set(saved_config) if config.get(key) != saved_config.get(key))
        if changed:
            raise ConfigError(
                f"{output_dir} holds outputs made with other settings ({', '.join(changed)} differ); "
                "use --overwrite (overwrite=True) to redo them, or another output folder"
            )
        manifest.files = files
        return manifest

    def is_done(self, source: Source, formats: tuple[str, ...]) -> bool:
        """True when ``source`` was done from the same path and all its outputs are there."""
        entry = self.files.get(source.name)
        if not entry or entry.get("status") != "done" or entry.get("path") != os.path.abspath(source.path):
            return False
        return all(os.path.exists(path) for path in output_paths(self.output_dir, source, formats).values())

    def record(self, source: Source, status: str, **details: object) -> None:
        """Note ``source``'s status; saves when the last save is a second old."""
        self.files[source.name] = {"path": os.path.abspath(source.path), "status": status, **details}
        if time.monotonic() - self._saved_at >= SAVE_EVERY_SECONDS:
            self.save()

    def save(self) -> None:
        """Write the manifest atomically."""
        data = {"config": self.config, "files": self.files}
        write_text_atomic(self.path, json.dumps(data, indent=1, ensure_ascii=False))
        self._saved_at = time.monotonic()
