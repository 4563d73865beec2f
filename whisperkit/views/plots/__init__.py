"""Plotly figures of runs: utilization timelines, before/after summaries, batch-size sweeps.

Every function returns a ``plotly.graph_objects.Figure`` and never shows it; a notebook displays
the figure it gets, :func:`whisperkit.views.report.report` writes it into an HTML file.

>>> from whisperkit.views import plots
>>> plots.timeline(comparison)          # doctest: +SKIP   CPU (and GPU) over time, per run
>>> plots.summary(comparison)           # doctest: +SKIP   RTFx, CPU %, GPU %, memory as bars
>>> plots.sweep(sweep_result)           # doctest: +SKIP   RTFx and memory against batch size
>>> plots.stage_timeline(corpus_result) # doctest: +SKIP   the corpus pipeline's stages over time
>>> plots.worker_timelines(ray_result)  # doctest: +SKIP   one timeline per model worker (engine "ray")

One module per figure (``timelines``, ``summaries``, ``sweeps``); ``common`` holds the colours,
notes and titles they share. Labels, units and decimals of metrics come from the registry
(:data:`whisperkit.experiments.metrics.METRICS`), numbers as text from :mod:`whisperkit.views.format`.
"""

from whisperkit.views.plots.common import RUN_COLORS, runs_of
from whisperkit.views.plots.stages import stage_timeline
from whisperkit.views.plots.summaries import summary
from whisperkit.views.plots.sweeps import sweep
from whisperkit.views.plots.timelines import phases, timeline
from whisperkit.views.plots.workers import worker_timelines

__all__ = ["RUN_COLORS", "phases", "runs_of", "stage_timeline", "summary", "sweep", "timeline", "worker_timelines"]
