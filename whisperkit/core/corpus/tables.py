"""The tables of a corpus run, each built once: its columns (name, label, decimals) and one
function giving its rows of rounded values.

:meth:`CorpusResult.stage_table` and :meth:`CorpusResult.worker_table` are these rows as pandas
DataFrames; :mod:`whisperkit.views.tables` writes the same rows as text for the report and the
app, so every view shows the same numbers.

>>> [column.label for column in STAGE_COLUMNS]
['stage', 'threads', 'items', 'busy s', 'wait s', 'busy % of the run']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from whisperkit.checks import is_missing

if TYPE_CHECKING:
    import pandas as pd

    from whisperkit.core.corpus.engines.base import StageStats, WorkerTimeline


@dataclass(frozen=True)
class Column:
    """One column of a table: ``key`` in its rows (and the DataFrame), ``label`` over it in text
    and HTML, ``digits`` the decimals of its numbers (None: shown as it is, such as a name)."""

    key: str
    label: str
    digits: int | None = None


SECONDS_DIGITS = 2  # busy, wait and load seconds, as the metrics' seconds
PERCENT_DIGITS = 1  # busy percent of the run, as the metrics' percents

STAGE_COLUMNS = (
    Column("stage", "stage"),
    Column("threads", "threads", 0),
    Column("items", "items", 0),
    Column("busy_seconds", "busy s", SECONDS_DIGITS),
    Column("wait_seconds", "wait s", SECONDS_DIGITS),
    Column("busy_percent", "busy % of the run", PERCENT_DIGITS),
)
WORKER_COLUMNS = (
    Column("worker", "worker"),
    Column("node", "node"),
    Column("gpus", "GPUs"),
    Column("pid", "pid"),
    Column("restarted", "restarted"),
    Column("batches", "batches", 0),
    Column("windows", "windows", 0),
    Column("audio_seconds", "audio s", 1),
    Column("busy_seconds", "busy s", SECONDS_DIGITS),
    Column("wait_seconds", "wait s", SECONDS_DIGITS),
    Column("load_seconds", "load s", SECONDS_DIGITS),
    Column("busy_percent", "busy % of the run", PERCENT_DIGITS),
)


def stage_rows(stages: Mapping[str, StageStats], wall_seconds: float) -> list[dict[str, Any]]:
    """One row per stage of a run of ``wall_seconds``: threads, items, busy and wait seconds, busy
    percent of the run (over 100 for a pool of threads working at once; None for a run of no time)."""
    return _rounded([{"stage": name, "threads": s.threads, "items": s.items, "busy_seconds": s.busy_seconds,
                      "wait_seconds": s.wait_seconds, "busy_percent": _percent(s.busy_seconds, wall_seconds)}
                     for name, s in stages.items()], STAGE_COLUMNS)


def worker_rows(timelines: Sequence[WorkerTimeline], wall_seconds: float) -> list[dict[str, Any]]:
    """engine "ray": one row per model worker (actor life) of a run of ``wall_seconds``: where it
    ran, batches, windows, audio, busy, wait and load seconds, busy percent of the run."""
    return _rounded([{"worker": w.label, "node": w.node_ip, "gpus": ",".join(map(str, w.gpus)) or "-", "pid": w.pid,
                      "restarted": w.restarted, "batches": w.batches, "windows": w.windows,
                      "audio_seconds": w.audio_seconds, "busy_seconds": w.busy_seconds, "wait_seconds": w.wait_seconds,
                      "load_seconds": w.load_seconds, "busy_percent": _percent(w.busy_seconds, wall_seconds)}
                     for w in timelines], WORKER_COLUMNS)


def as_frame(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> pd.DataFrame:
    """``rows`` as a pandas DataFrame indexed by the first column (empty without rows)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(list(rows), columns=[c.key for c in columns]).set_index(columns[0].key)


def _percent(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def _rounded(rows: list[dict[str, Any]], columns: Sequence[Column]) -> list[dict[str, Any]]:
    digits = {c.key: c.digits for c in columns if c.digits}
    return [{key: round(value, digits[key]) if key in digits and not is_missing(value) else value
             for key, value in row.items()} for row in rows]
