"""The app's live chart: CPU (system and this process) and each GPU's utilization while a job runs.

Each run's own sampler feeds it: the runners call ``on_start(sampler)`` (:meth:`LiveChart.watch`)
as a run begins, so the chart starts afresh with every run. :meth:`LiveChart.hold` keeps the lines
of a run that ended (Compare's "before") as faded dashed lines beside the next run's, until
:meth:`LiveChart.reset` at the next job. A ticker thread calls :meth:`LiveChart.refresh` at most
every :data:`REFRESH_S` seconds. Readings not taken (NaN) are left out, so an axis never reads "nan".
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from whisperkit.measure.columns import gpu_column, gpu_indices

if TYPE_CHECKING:
    from whisperkit.measure.sampler import Sampler

REFRESH_S = 0.5  # the live chart is redrawn at most this often
CPU_SERIES = (("cpu_percent", "CPU % (system)"), ("process_cpu_percent", "CPU % (this process)"))
EMPTY_RANGE_S = (0, 10)  # the time axis while the chart has no reading (plotly's autorange would say nan)
HELD = "held"  # meta key of a held (earlier run's) line


class LiveChart:
    """A plotly ``FigureWidget`` (``figure``) fed by the sampler of the run in progress."""

    def __init__(self) -> None:
        import plotly.graph_objects as go

        self.figure = go.FigureWidget(layout=_layout())
        for _, name in CPU_SERIES:
            self.figure.add_scatter(x=[], y=[], mode="lines", name=name)
        self._lock = threading.Lock()
        self._sampler: Sampler | None = None
        self._index = 0
        self._data: dict[str, tuple[list[float], list[float]]] = {}

    def watch(self, sampler: Sampler) -> None:
        """Make ``sampler`` the chart's source and clear the chart (a runner's ``on_start``)."""
        with self._lock:
            self._sampler = sampler
            self._index = 0
            self._data = {}
        with self.figure.batch_update():
            for trace in self.figure.data:
                if not (trace.meta or {}).get(HELD):
                    trace.x, trace.y = (), ()

    def hold(self, label: str) -> None:
        """Keep the current lines as faded dashed ``"{label}: ..."`` lines (earlier held lines go)."""
        self.refresh()
        with self._lock:
            series = {name: (tuple(xs), tuple(ys)) for name, (xs, ys) in self._data.items() if xs}
        with self.figure.batch_update():
            self.figure.data = tuple(t for t in self.figure.data if not (t.meta or {}).get(HELD))
            for name, (x, y) in series.items():
                self.figure.add_scatter(x=x, y=y, mode="lines", name=f"{label}: {name}", opacity=0.45,
                                        line=dict(dash="dot"), meta={HELD: True})

    def reset(self) -> None:
        """Forget the sampler, the held lines and every reading (a new job starts)."""
        with self._lock:
            self._sampler, self._index, self._data = None, 0, {}
        with self.figure.batch_update():
            self.figure.data = tuple(t for t in self.figure.data if not (t.meta or {}).get(HELD))
            for trace in self.figure.data:
                trace.x, trace.y = (), ()
            self.figure.layout.xaxis.range = EMPTY_RANGE_S
            self.figure.layout.xaxis.autorange = False

    def refresh(self) -> str:
        """Append the samples taken since the last refresh; returns the run's current phase ("" if none)."""
        with self._lock:
            sampler = self._sampler
            if sampler is None:
                return ""
            new = sampler.samples(self._index)
            self._index += len(new)
            for record in new:
                for column, name in _series(record):
                    xs, ys = self._data.setdefault(name, ([], []))
                    if _reading(record.get("time_s")) and _reading(record.get(column)):
                        xs.append(record["time_s"])
                        ys.append(record[column])
            series = {name: (tuple(times), tuple(values)) for name, (times, values) in self._data.items()}
            marks = sampler.marks
            phase = str(marks["label"].iloc[-1]) if len(marks) else ""
        traces = {trace.name: trace for trace in self.figure.data}
        with self.figure.batch_update():
            if any(x for x, _ in series.values()):
                self.figure.layout.xaxis.autorange = True
            for name, (x, y) in series.items():
                if name not in traces:
                    self.figure.add_scatter(x=x, y=y, mode="lines", name=name)
                else:
                    traces[name].x, traces[name].y = x, y
        return phase


def _series(record: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(column, trace name) pairs of a sample that the live chart shows."""
    yield from CPU_SERIES
    for index in gpu_indices(record):
        yield gpu_column(index, "util_percent"), f"GPU {index} util %"


def _reading(value: object) -> bool:
    """A number that was measured (not None or NaN)."""
    return isinstance(value, (int, float)) and not math.isnan(value)


def _layout() -> dict[str, Any]:
    return {
        "title": {"text": "Live utilization", "font": {"size": 14}},
        "height": 260,
        "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
        "xaxis": {"title": {"text": "seconds"}, "range": list(EMPTY_RANGE_S), "autorange": False},
        "yaxis": {"title": {"text": "%"}, "range": [0, 105]},
        "legend": {"orientation": "h", "y": -0.25},
    }
