"""Runs on disk: a folder per run with ``run.json`` and ``timeline.parquet``.

``run.json`` holds the config, environment, metrics, transcript and phase marks; the
timeline (one row per utilization sample) is Parquet. Every file is written to a temporary
name and renamed, so an interrupted save never leaves a half-written run. Comparisons and
sweeps are folders holding ``comparison.json`` / ``sweep.json`` and their runs under ``runs/``
(the command line writes ``report.html`` beside them with ``whisperkit.views.report``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisperkit.checks import is_missing
from whisperkit.errors import RunError, first_line
from whisperkit.files import write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:
    from whisperkit.experiments.results import Comparison, Run, Sweep

RUN_KIND = "whisperkit.run"
SCHEMA = 1


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
    document = {
        "kind": RUN_KIND,
        "schema": SCHEMA,
        "whisperkit_version": __version__,
        "started_at": run.started_at,
        "config": run.config.to_dict(),
        "environment": run.environment,
        "metrics": run.metrics,
        "transcript": run.transcript.to_dict(),
        "marks": _records(run.marks),
        "reference": run.reference,
        "gpu_unavailable_reason": run.gpu_unavailable_reason,
    }
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
    try:
        return Run(
            config=Config.from_dict(document["config"]),
            transcript=Transcript.from_dict(document["transcript"]),
            environment=document["environment"],
            timeline=timeline,
            marks=pd.DataFrame(document["marks"], columns=["time_s", "label"]),
            metrics=document["metrics"],
            started_at=document.get("started_at", ""),
            reference=document.get("reference"),
            gpu_unavailable_reason=document.get("gpu_unavailable_reason"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RunError(f"{folder}/run.json: damaged or from another version ({first_line(error)})") from None


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
    """Write a sweep's JSON and a run per batch size."""
    folder = Path(folder)
    for run in sweep.runs:
        save_run(run, folder / "runs" / sweep_run_name(int(run.config.batch_size)))
    write_text_atomic(folder / "sweep.json", to_json(sweep.to_dict()))
    return str(folder)


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


def _records(frame) -> list[dict]:
    if frame is None:
        return []
    return [{"time_s": float(t), "label": str(label)} for t, label in zip(frame["time_s"], frame["label"])]


def _nan_to_none(value):
    if is_missing(value):
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    return value
