"""The app's live chart: CPU (system and this process) and each GPU's utilization while a job runs.

Each run's own sampler feeds it: the runners call ``on_start(sampler)`` (:meth:`LiveChart.watch`)
as a run begins, so the chart starts afresh with every run. A ticker thread calls
:meth:`LiveChart.refresh` at most every :data:`REFRESH_S` seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from whisperkit.measure.columns import gpu_column, gpu_indices

if TYPE_CHECKING:
    from whisperkit.measure.sampler import Sampler

REFRESH_S = 0.5  # the live chart is redrawn at most this often
CPU_SERIES = (("cpu_percent", "CPU % (system)"), ("process_cpu_percent", "CPU % (this process)"))


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
                trace.x, trace.y = (), ()

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
                    xs.append(record["time_s"])
                    ys.append(record[column])
            series = {name: (tuple(times), tuple(values)) for name, (times, values) in self._data.items()}
            marks = sampler.marks
            phase = str(marks["label"].iloc[-1]) if len(marks) else ""
        traces = {trace.name: trace for trace in self.figure.data}
        with self.figure.batch_update():
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


def _layout() -> dict[str, Any]:
    return {
        "title": {"text": "Live utilization", "font": {"size": 14}},
        "height": 260,
        "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
        "xaxis": {"title": {"text": "seconds"}},
        "yaxis": {"title": {"text": "%"}, "range": [0, 105]},
        "legend": {"orientation": "h", "y": -0.25},
    }
