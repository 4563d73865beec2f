"""The corpus pipeline's engines: who runs the stages, behind one interface.

The stages are plain functions on plain data, in :mod:`~whisperkit.core.corpus.stages`,
:mod:`~whisperkit.core.corpus.decoding` and :mod:`~whisperkit.core.corpus.outputs`::

    Source(index, path, name)                               sources.find_sources(paths)
      -- read_pieces(source) -------------------------> Piece | Failure     (CPU)
         decode in blocks of 60 s; a file of <= 30 s is one whole piece, a longer one is cut by
         Silero VAD into pieces of <= 30 s of speech; Piece.spans maps piece time to file time;
         the file's last piece says last=True and carries audio_seconds and warnings
      -- Packer(pack).add(piece) / .flush() ----------> Window(places=[Place(piece, start, end)])
         pieces packed in arrival order into windows of <= 28 s, 0.6 s of silence between two
         (pack=False: one piece per window); places is the clip map
      -- Batcher(batch_size).add(windows) ------------> batches, packed and single-piece apart
      -- add_features(window, model.feature_extractor) -> Window.features (n_mels x 3000)
      -- WindowDecoder(model, language=...)(windows) ---> [PieceText]       (the model; one batch)
         BatchedInferencePipeline.forward on the stacked features; a batch with a packed window
         decodes with word timestamps and each word goes to the piece holding its midpoint
      -- group PieceTexts by source until is_complete -> assemble(path, texts, config) -> Transcript
      -- the driver: outputs.write_outputs(dir, source, transcript, formats); Manifest.record(...)

An engine (:class:`~whisperkit.core.corpus.engines.base.Engine`) runs them and reports an
:class:`~whisperkit.core.corpus.engines.base.EngineRun`:

- :mod:`~whisperkit.core.corpus.engines.threads` (``engine="local"``): reader threads, a packer
  thread and the model in this process, joined by bounded queues;
- :mod:`~whisperkit.core.corpus.engines.ray_engine` (``engine="ray"``): CPU tasks and an actor
  pool of model workers on a Ray cluster, with
  :mod:`~whisperkit.core.corpus.engines.ray_cluster` (joining or starting Ray),
  :mod:`~whisperkit.core.corpus.engines.ray_plan` (the model and the resources, refused before
  starting where they cannot fit), :mod:`~whisperkit.core.corpus.engines.ray_workers` (what runs
  on the cluster), :mod:`~whisperkit.core.corpus.engines.ray_run` (the driver's side) and
  :mod:`~whisperkit.core.corpus.engines.ray_watch` (bounded waits: room before a run, a run that
  stops making progress stopped in one line).

The engines share :mod:`~whisperkit.core.corpus.engines.base` and the stage modules, never each
other's names. The driver, :mod:`whisperkit.core.corpus.transcribe`, chooses one with
:func:`open_engine` and does the rest (files, resume, outputs, the result).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from whisperkit.errors import ConfigError

if TYPE_CHECKING:
    from whisperkit.core.config import Config
    from whisperkit.core.corpus.engines.base import Engine

ENGINES = ("local", "ray")


def open_engine(name: str, config: Config, model: object | None = None, *, reader_threads: int | None = None,
                ray_address: str | None = None, model_workers: int | None = None) -> Engine:
    """The engine ``name`` ("local" or "ray") for ``config``, ready to run (model loaded, or Ray
    joined and planned). ``model``: a loaded model or a name or folder instead of ``config.model``.
    Settings that go with the other engine are refused in one line."""
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; expected one of: {', '.join(ENGINES)}")
    if name == "ray":
        if reader_threads is not None:
            raise ConfigError("reader_threads (--reader-threads) are the local engine's; engine 'ray' reads files in "
                              "CPU tasks across the cluster")
        from whisperkit.core.corpus.engines.ray_engine import RayEngine

        return RayEngine(config, model, ray_address=ray_address, model_workers=model_workers)  # type: ignore[arg-type]
    if ray_address is not None or model_workers is not None:
        raise ConfigError("ray_address and model_workers (--ray-address, --model-workers) need engine 'ray'")
    from whisperkit.core.corpus.engines.threads import ThreadEngine

    return ThreadEngine(config, model, reader_threads=reader_threads)


__all__ = ["ENGINES", "open_engine"]
