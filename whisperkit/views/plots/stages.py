"""The corpus pipeline's stages over time: which stage worked when, and whether the model waited.

One bar per piece of work of each stage thread (``read 0``, ``read 1``, ..., ``pack``, ``model``,
``write``), on the run's clock; gaps in the ``model`` row are the model waiting for input. With
``monitor=True`` a panel above shows CPU (and GPU) utilization on the same time axis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from whisperkit.errors import WhisperkitError
from whisperkit.measure.columns import gpu_column, gpu_indices
from whisperkit.views.plots.common import PHASE_COLORS, TEMPLATE

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from whisperkit.core.corpus.result import CorpusResult
    from whisperkit.experiments.results import Run

STAGE_COLORS = {"read": "#f39c12", "pack": "#8e6c8a", "model": "#27ae60", "write": "#4d4d4d"}
STAGE_ORDER = ("read", "pack", "model", "write")


def stage_timeline(result: CorpusResult | Run, *, title: str | None = None) -> Figure:
    """Bars of each stage thread's work over time (seconds on the run's clock); above them,
    CPU and GPU utilization where the run was monitored.

    ``result`` is what :func:`whisperkit.transcribe_corpus` returns, or a corpus-mode
    :class:`~whisperkit.Run` (``wk.run(folder, Config(mode="corpus"))``, or loaded back).

    >>> result = wk.transcribe_corpus(files, monitor=True)   # doctest: +SKIP
    >>> wk.plots.stage_timeline(result)                      # doctest: +SKIP
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    result, timeline, marks = _corpus_of(result)
    spans = result.spans
    monitored = timeline is not None and len(timeline) > 0
    rows = 2 if monitored else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, row_heights=[0.4, 0.6][-rows:] if rows == 2 else [1.0],
                        vertical_spacing=0.08)
    split = _split_stages(spans)
    lanes = _lanes(spans, split)
    for stage in STAGE_ORDER:
        mine = [span for span in spans if span.stage == stage]
        if not mine:
            continue
        fig.add_trace(go.Bar(
            y=[_lane(span, split) for span in mine], x=[span.end_s - span.start_s for span in mine],
            base=[span.start_s for span in mine], orientation="h", name=stage,
            marker=dict(color=STAGE_COLORS[stage], line=dict(width=0)),
            hovertemplate="%{y}: %{base:.2f} s + %{x:.3f} s<extra></extra>",
        ), row=rows, col=1)
    fig.update_yaxes(categoryorder="array", categoryarray=lanes[::-1], row=rows, col=1)
    if monitored:
        _utilization(fig, timeline)
        _marks(fig, marks)
    fig.update_xaxes(title_text="time since the run started (s)", row=rows, col=1)
    wait = result.model_wait_percent
    fig.update_layout(
        template=TEMPLATE, barmode="overlay", bargap=0.25, height=260 + 40 * len(lanes) + (220 if monitored else 0),
        title=title or (f"Corpus pipeline: {len(result.transcripts)} files, {result.rtfx:.1f}x real time; "
                        f"the model waited {wait:.0f} % of the run"),
    )
    return fig


MARK_LEVELS = 3  # labels of nearby marks go on this many heights in turn, so they never overlap


def _marks(fig: Figure, marks: Any) -> None:
    """A dotted line per mark with its label above the plot; labels of successive marks step down
    one of :data:`MARK_LEVELS` heights, so close marks ("prepare", "first batch") stay readable."""
    for number, (_, mark) in enumerate(marks.sort_values("time_s").iterrows()):
        fig.add_vline(x=mark["time_s"], line=dict(color=PHASE_COLORS.get("decode", "#888"), dash="dot"))
        fig.add_annotation(x=mark["time_s"], xref="x", yref="paper", y=1.0, yshift=-14 * (number % MARK_LEVELS),
                           yanchor="bottom", xanchor="left", text=str(mark["label"]), showarrow=False,
                           font=dict(size=11, color="#555"), bgcolor="rgba(255,255,255,0.8)", name="mark")


def _corpus_of(obj: object) -> tuple[CorpusResult, Any, Any]:
    """``(corpus result, timeline, marks)`` of a CorpusResult or a corpus-mode Run."""
    corpus: Any = getattr(obj, "corpus", obj)
    if getattr(corpus, "spans", None) is None:
        what = "a Run that is not a corpus run" if hasattr(obj, "corpus") else type(obj).__name__
        raise WhisperkitError(f"expected the result of wk.transcribe_corpus or a corpus-mode Run, got {what}")
    return corpus, getattr(obj, "timeline", None), getattr(obj, "marks", None)


def _split_stages(spans) -> set[str]:
    """Stages drawn one lane per thread: ``read``, and any other that several threads (or Ray
    workers) ran."""
    threads: dict[str, set[int]] = {}
    for span in spans:
        threads.setdefault(span.stage, set()).add(span.thread)
    return {"read"} | {stage for stage, seen in threads.items() if len(seen) > 1}


def _lane(span, split: set[str]) -> str:
    return f"{span.stage} {span.thread}" if span.stage in split else span.stage


def _lanes(spans, split: set[str]) -> list[str]:
    lanes = {_lane(span, split): (STAGE_ORDER.index(span.stage), span.thread) for span in spans}
    return sorted(lanes, key=lanes.__getitem__)


def _utilization(fig: Figure, frame: Any) -> None:
    import plotly.graph_objects as go

    columns = {"process_cpu_percent": "process CPU % (of all cores)", "cpu_percent": "machine CPU %"}
    for index in gpu_indices(frame):
        columns[gpu_column(index, "util_percent")] = f"GPU {index} %"
    for column, name in columns.items():
        if column in frame:
            fig.add_trace(go.Scatter(x=frame["time_s"], y=frame[column], name=name, mode="lines"), row=1, col=1)
    fig.update_yaxes(title_text="utilization %", range=[0, 105], row=1, col=1)
