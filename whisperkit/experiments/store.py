"""Runs on disk: a folder per run with ``run.json`` and ``timeline.parquet``.

``run.json`` holds the config, environment, metrics, transcript, the phase marks and why a
utilization column is NaN (``utilization``; a corpus run also each file's transcript, the stages
and their spans); the timeline (one row per utilization sample) is Parquet. Runs saved before
``utilization`` was written load the same (its reasons were in the environment then). Every file is written to a temporary
name and renamed, so an interrupted save never leaves a half-written run. Comparisons and
sweeps are folders holding ``comparison.json`` / ``sweep.json`` and their runs under ``runs/``
(the command line writes ``report.html`` beside them with ``whisperkit.views.report``).

A folder holds one experiment. :func:`claim_folder` takes it for one: it refuses a folder that
already holds files unless asked to overwrite (and then removes only what an experiment writes,
never other files), and holds a lock file, ``.whisperkit.lock``, while the experiment runs, so
two experiments started at once into one folder cannot mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisperkit.checks import is_missing
from whisperkit.errors import RunError, WhisperkitError, first_line
from whisperkit.files import release_lock, take_lock, write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:
    from whisperkit.experiments.results import Comparison, Run, Sweep
    from whisperkit.measure.utilization import Utilization

RUN_KIND = "whisperkit.run"
SCHEMA = 1
LOCK_NAME = ".whisperkit.lock"
#: What an experiment writes into its folder; only these are removed by ``overwrite=True``.
EXPERIMENT_FILES = ("runs", "run.json", "timeline.parquet", "comparison.json", "sweep.json", "report.html")


def save(result: Run | Comparison | Sweep, folder: str | os.PathLike) -> str:
    """Write a Run, Comparison or Sweep into ``folder``; returns the folder path."""
    kind = type(result).__name__
    writers: dict[str, Callable[[Any, str | os.PathLike], str]] = {
        "Run": save_run, "Comparison": save_comparison, "Sweep": save_sweep}
    if kind not in writers:
        raise RunError(f"cannot save a {kind}: expected a Run, Comparison or Sweep")
    return writers[kind](result, folder)


def save_run(run: Run, folder: str | os.PathLike) -> str:
    """Write ``run`` into ``folder`` (created if needed); returns the folder path."""
    import io

    from whisperkit._version import __version__

    folder = Path(folder)
    recorded = run.utilization.to_dict()
    document = {
        "kind": RUN_KIND,
        "schema": SCHEMA,
        "whisperkit_version": __version__,
        "started_at": run.started_at,
        "config": run.config.to_dict(),
        "environment": run.environment,
        "metrics": run.metrics,
        "transcript": run.transcript.to_dict(),
        "marks": recorded.pop("marks"),  # where runs saved before held them
        "utilization": recorded,  # why a column is NaN
        "reference": run.reference,
        "gpu_unavailable_reason": run.gpu_unavailable_reason,
        "wer_by_channel": run.wer_by_channel,
    }
    if run.corpus is not None:  # corpus mode: each file's transcript, the stages and their spans
        document["corpus"] = run.corpus.to_dict()
    buffer = io.BytesIO()
    run.timeline.to_parquet(buffer, index=False)
    write_bytes_atomic(folder / "timeline.parquet", buffer.getvalue())
    write_text_atomic(folder / "run.json", to_json(document))  # last: its presence marks a whole run
    return str(folder)


def load_run(folder: str | os.PathLike) -> Run:
    """Read a run saved by :func:`save_run`; a clear :class:`RunError` for anything else."""
    import pandas as pd

    from whisperkit.core.config import Config
    from whisperkit.core.transcription import Transcript
    from whisperkit.experiments.results import Run

    folder = Path(folder)
    document = _read_run_json(folder)
    try:
        timeline = pd.read_parquet(folder / "timeline.parquet")
    except FileNotFoundError:
        raise RunError(f"{folder}: run has no timeline.parquet; the run is incomplete") from None
    except Exception as error:  # pyarrow raises several kinds for a damaged file
        raise RunError(f"{folder}/timeline.parquet: damaged ({first_line(error)})") from None
    metrics = _checked_metrics(document.get("metrics"), folder)
    _check_timeline(timeline, folder)
    _check_environment(document.get("environment"), folder)
    try:
        return Run(
            config=Config.from_dict(document["config"]),
            transcript=Transcript.from_dict(document["transcript"]),
            environment=document["environment"],
            utilization=_utilization(timeline, document),
            metrics=metrics,
            started_at=document.get("started_at", ""),
            reference=document.get("reference"),
            gpu_unavailable_reason=document.get("gpu_unavailable_reason"),
            corpus=_corpus(document.get("corpus")),
            wer_by_channel=dict(document.get("wer_by_channel") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError, WhisperkitError) as error:
        raise RunError(f"{folder}/run.json: damaged or from another version ({first_line(error)})") from None


def _utilization(timeline, document: dict) -> Utilization:
    """The run's Utilization: its timeline, the marks, and why columns are NaN (a run saved before
    ``utilization`` was written keeps those reasons in its environment)."""
    from whisperkit.measure.utilization import Utilization

    environment = document.get("environment") or {}
    said = document.get("utilization") or {"column_reasons": environment.get("gpu_column_reasons"),
                                            "process_gpu_unavailable_reason": environment.get("process_gpu_unavailable_reason")}
    return Utilization.from_dict(timeline, {**said, "marks": document["marks"]})


def _corpus(data: dict | None) -> Any:
    """A corpus run's CorpusResult from ``run.json`` (None for other runs)."""
    if data is None:
        return None
    from whisperkit.core.corpus.result import CorpusResult

    return CorpusResult.from_dict(data)


def _checked_metrics(metrics, folder: Path) -> dict:
    """The saved metrics as numbers; a value that is not one (null, text) is missing (shown n/a)."""
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise RunError(f"{folder}/run.json: damaged, its metrics are a {type(metrics).__name__}, not a table")
    return {
        str(key): value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        for key, value in metrics.items()
    }


def _check_timeline(timeline, folder: Path) -> None:
    """Every timeline column is a number (``time_s`` first of all); RunError naming the column."""
    import pandas as pd

    if len(timeline.columns) and "time_s" not in timeline.columns:
        raise RunError(f"{folder}/timeline.parquet: damaged, it has no time_s column")
    for column in timeline.columns if len(timeline) else []:  # an empty column has no type to check
        kind = timeline[column].dtype
        if not (pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(kind)):
            held = "text" if pd.api.types.is_string_dtype(kind) or pd.api.types.is_object_dtype(kind) else f"{kind} values"
            raise RunError(f"{folder}/timeline.parquet: damaged, its column {column} holds {held}, not numbers")


def _check_environment(environment, folder: Path) -> None:
    """The environment is a table; its ``gpus`` (where present) a list of tables."""
    if environment is None:
        return
    if not isinstance(environment, dict):
        raise RunError(f"{folder}/run.json: damaged, its environment is a {type(environment).__name__}, not a table")
    gpus = environment.get("gpus")
    if gpus is not None and not (isinstance(gpus, list) and all(isinstance(gpu, dict) for gpu in gpus)):
        raise RunError(f"{folder}/run.json: damaged, its environment's gpus are {type(gpus).__name__}, "
                       "not a list of GPUs")


def load_runs(folder: str | os.PathLike) -> list:
    """Every run in ``folder`` and below (or ``folder`` itself if it is a run), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"{folder}: no such folder of runs")
    if (folder / "run.json").is_file():
        return [load_run(folder)]
    runs = [load_run(path.parent) for path in sorted(folder.rglob("run.json"))]
    if not runs:
        raise RunError(f"{folder}: holds no whisperkit run (no run.json below it)")
    return sorted(runs, key=lambda run: run.started_at)


def save_comparison(comparison: Comparison, folder: str | os.PathLike) -> str:
    """Write a comparison's JSON and its two runs (each repeat)."""
    folder = Path(folder)
    for side, runs in (("before", comparison.before_runs), ("after", comparison.after_runs)):
        for number, run in enumerate(runs, start=1):
            save_run(run, folder / "runs" / comparison_run_name(side, number, len(runs)))
    write_text_atomic(folder / "comparison.json", to_json(comparison.to_dict()))
    return str(folder)


def save_sweep(sweep: Sweep, folder: str | os.PathLike) -> str:
    """Write a sweep's JSON and a run per batch size (a batch size measured twice: ``batch-008``,
    then ``batch-008-2``, never one over the other)."""
    folder = Path(folder)
    seen: dict[int, int] = {}
    for run in sweep.runs:
        size = int(run.config.batch_size)
        seen[size] = seen.get(size, 0) + 1
        name = sweep_run_name(size) + (f"-{seen[size]}" if seen[size] > 1 else "")
        save_run(run, folder / "runs" / name)
    write_text_atomic(folder / "sweep.json", to_json(sweep.to_dict()))
    return str(folder)


@contextlib.contextmanager
def claim_folder(folder: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Hold ``folder`` for one experiment (a context manager); see the module notes.

    Raises :class:`RunError` when another experiment holds the folder now, when the folder
    holds files and ``overwrite`` is False, and when ``overwrite`` would have to remove files
    an experiment does not write.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder} is a file, not a folder; choose a folder for the experiment")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create {folder}: {error.strerror or error}; choose another folder") from None
    lock = folder / LOCK_NAME
    take_lock(lock, "experiment", RunError)
    try:
        _make_room(folder, overwrite)
        yield folder
    finally:
        release_lock(lock)
        with contextlib.suppress(OSError):
            if created:  # an experiment that failed before writing anything leaves no empty folder
                folder.rmdir()


def _make_room(folder: Path, overwrite: bool) -> None:
    entries = sorted(path.name for path in folder.iterdir() if path.name != LOCK_NAME)
    if not entries:
        return
    if not overwrite:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise RunError(
            f"{folder} already holds files ({shown}); a folder holds one experiment: choose a new or "
            "empty folder, or pass --overwrite (overwrite=True) to replace the experiment in it"
        )
    foreign = [name for name in entries if name not in EXPERIMENT_FILES and not _is_temporary(name)]
    if foreign:
        raise RunError(
            f"{folder} holds files no experiment writes ({', '.join(foreign[:3])}); --overwrite removes only "
            "an experiment's own files: choose another folder"
        )
    for name in entries:
        path = folder / name
        try:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        except OSError as error:
            raise RunError(f"cannot remove {path}: {error.strerror or error}") from None


def _is_temporary(name: str) -> bool:
    """A temporary file an interrupted atomic write left behind (``.<name>.<pid>-<hex>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def comparison_run_name(side: str, number: int, repeats: int) -> str:
    """``before``/``after`` for a single repeat, else ``before-1``, ``after-1``, ..."""
    return side if repeats == 1 else f"{side}-{number}"


def sweep_run_name(batch_size: int) -> str:
    """``batch-008``: sorts in batch-size order."""
    return f"batch-{batch_size:03d}"


def to_json(document: dict) -> str:
    """JSON with NaN written as null, so any JSON reader accepts it."""
    return json.dumps(_nan_to_none(document), indent=2, ensure_ascii=False, default=str)


def _read_run_json(folder: Path) -> dict:
    if not folder.is_dir():
        raise RunError(f"{folder}: no such run folder")
    path = folder / "run.json"
    if not path.is_file():
        raise RunError(f"{folder}: not a whisperkit run (no run.json)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path}: damaged, not valid JSON ({first_line(error)})") from None
    if not isinstance(document, dict) or document.get("kind") != RUN_KIND:
        raise RunError(f"{path}: not a whisperkit run (kind is not {RUN_KIND!r})")
    if document.get("schema") != SCHEMA:
        raise RunError(f"{path}: run schema {document.get('schema')!r} is not {SCHEMA}; use a matching whisperkit")
    return document


def _nan_to_none(value):
    if is_missing(value):
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    return value
