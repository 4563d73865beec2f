"""The notebook app: pick a model, a device and a batch size, transcribe, watch CPU and GPU live.

>>> from whisperkit.views.app import app
>>> a = app()            # doctest: +SKIP   the last value of a cell shows it
>>> a                    # doctest: +SKIP

Every control is an attribute, so code (and tests) can drive the app as a user would::

    a.audio.value = "aesop_02"; a.mode.value = "sequential"
    a.transcribe_button.click()
    a.wait()                       # the work runs on a background thread
    a.last_result.transcript.text  # an experiment.Run, Comparison or Sweep

While a job runs the buttons are disabled and a live chart shows CPU utilization (the whole
machine and this process) and, where NVML sees NVIDIA GPUs, each GPU's utilization, redrawn at
most twice a second. Each run's own sampler feeds the chart: Transcribe, Compare and Sweep
hand ``on_start`` to :func:`whisperkit.experiments.runners.run`, :func:`~whisperkit.experiments.runners.compare`
and :func:`~whisperkit.experiments.runners.sweep`, so the chart starts afresh with every run.

A :class:`whisperkit.WhisperkitError` (a missing file, CUDA asked for where there is none, an
unknown model) shows as one red line in the app; so does any other exception, as its type and
first line. The exception itself is kept in :attr:`App.last_error`.
"""

from __future__ import annotations

import html
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import weakref

from whisperkit.errors import WhisperkitError, first_line

BUNDLED_CHOICE = "tiny.en (bundled)"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
COMPUTE_TYPE_CHOICES = ("auto", "int8", "int8_float16", "float16", "float32")
MODE_CHOICES = ("batched", "sequential")
SWEEP_SIZES = (1, 2, 4, 8, 16)
LIVE_REFRESH_S = 0.5  # the live chart is redrawn at most this often
DEFAULT_SAMPLE = "gettysburg"
ERROR_COLOR = "#b00020"

_log = logging.getLogger(__name__)


def app() -> App:
    """A new app (see :class:`App`); display it as the last value of a notebook cell."""
    return App()


class App:
    """The widget app. Controls and outputs are public attributes; ``widget`` is the root VBox.

    Controls: ``model`` (Dropdown), ``model_path`` (Text, a local CTranslate2 folder that
    overrides ``model``), ``device``, ``compute_type``, ``mode`` (Dropdowns), ``batch_size``
    (IntSlider 1-64), ``batch_auto`` (Checkbox: batch size from device memory), ``audio``
    (Dropdown of bundled samples), ``audio_path`` (Text; overrides ``audio``), ``upload``
    (FileUpload; an uploaded file is saved to a temporary folder and its path put in
    ``audio_path``), and ``transcribe_button``, ``compare_button``, ``sweep_button``.

    Outputs: ``progress`` (IntProgress over the job's steps), ``status`` (HTML: what runs and
    for how long), ``message`` (HTML: the one-line error, red), ``live_figure`` (plotly
    FigureWidget), ``transcript`` and ``table`` (HTML), ``figures`` (VBox of FigureWidgets).

    State: ``busy``, ``last_result`` (the Run, Comparison or Sweep of the last job that
    succeeded), ``last_error`` (the exception of the last job that failed, else None);
    ``wait(timeout)`` blocks until the current job is over.
    """

    def __init__(self) -> None:
        import ipywidgets as w
        import pandas  # noqa: F401  imported here, not first in two threads at once (plotly checks it)
        import plotly.graph_objects as go
        from faster_whisper.utils import available_models

        import whisperkit.experiments.runners  # noqa: F401  likewise: the job thread then finds it loaded
        from whisperkit.core.samples import list_samples

        wide = {"description_width": "110px"}
        box = w.Layout(width="330px")
        models = [BUNDLED_CHOICE, *(name for name in available_models() if name != "tiny.en")]
        self.model = w.Dropdown(options=models, value=BUNDLED_CHOICE, description="Model", style=wide, layout=box)
        self.model_path = w.Text(placeholder="or a local CTranslate2 folder", description="Model folder",
                                 style=wide, layout=box)
        self.device = w.Dropdown(options=DEVICE_CHOICES, value="auto", description="Device", style=wide, layout=box)
        self.compute_type = w.Dropdown(options=COMPUTE_TYPE_CHOICES, value="auto", description="Compute type",
                                       style=wide, layout=box)
        self.mode = w.Dropdown(options=MODE_CHOICES, value="batched", description="Mode", style=wide, layout=box)
        self.batch_size = w.IntSlider(value=8, min=1, max=64, description="Batch size", style=wide,
                                      layout=w.Layout(width="300px"))
        self.batch_auto = w.Checkbox(value=False, description="auto", indent=False,
                                     tooltip="batch size from free device memory",
                                     layout=w.Layout(width="70px", margin="0 0 0 8px"))
        samples = list_samples()
        self.audio = w.Dropdown(options=samples, value=DEFAULT_SAMPLE if DEFAULT_SAMPLE in samples else samples[0],
                                description="Sample", style=wide, layout=box)
        self.audio_path = w.Text(placeholder="or a path to an audio/video file", description="Audio file",
                                 style=wide, layout=box)
        self.upload = w.FileUpload(accept="audio/*,video/*", multiple=False, description="Upload audio",
                                   layout=w.Layout(margin="2px 0 0 114px"))
        self.transcribe_button = w.Button(description="Transcribe", button_style="primary", icon="play")
        self.compare_button = w.Button(description="Compare before/after", icon="balance-scale",
                                       layout=w.Layout(width="190px"))
        self.sweep_button = w.Button(description="Sweep batch sizes", icon="line-chart",
                                     layout=w.Layout(width="170px"))
        self.progress = w.IntProgress(value=0, min=0, max=1, description="", layout=w.Layout(width="200px"))
        self.status = w.HTML(value="Ready.")
        self.message = w.HTML(value="")
        self.live_figure = go.FigureWidget(layout=_live_layout(go))
        for name in ("CPU % (system)", "CPU % (this process)"):
            self.live_figure.add_scatter(x=[], y=[], mode="lines", name=name)
        # a long transcript scrolls in its box instead of pushing the charts down
        self.transcript = w.HTML(value="", layout=w.Layout(max_height="140px", overflow="auto"))
        self.table = w.HTML(value="")
        self.figures = w.VBox([])
        self.last_result = None
        self.last_error: BaseException | None = None

        self._buttons = (self.transcribe_button, self.compare_button, self.sweep_button)
        self._done = threading.Event()
        self._done.set()
        self._lock = threading.Lock()
        self._live_sampler = None
        self._live_index = 0
        self._live_data: dict[str, tuple[list, list]] = {}
        self._job_label = ""
        self._job_started = 0.0
        self._upload_dir = tempfile.mkdtemp(prefix="whisperkit-upload-")
        weakref.finalize(self, shutil.rmtree, self._upload_dir, True)

        self.transcribe_button.on_click(lambda _: self._start("transcribe"))
        self.compare_button.on_click(lambda _: self._start("compare"))
        self.sweep_button.on_click(lambda _: self._start("sweep"))
        self.upload.observe(self._on_upload, names="value")
        self.mode.observe(self._on_batch_controls, names="value")
        self.batch_auto.observe(self._on_batch_controls, names="value")

        title = w.HTML("<b>whisperkit</b>: transcribe, and watch how the CPU and GPU are used")
        left = w.VBox([self.model, self.model_path, self.device, self.compute_type],
                      layout=w.Layout(margin="0 24px 0 0"))
        right = w.VBox([self.mode, w.HBox([self.batch_size, self.batch_auto]), self.audio, self.audio_path,
                        self.upload])
        self.widget = w.VBox([
            title,
            w.HBox([left, right]),
            w.HBox(list(self._buttons)),
            w.HBox([self.progress, self.status]),
            self.message,
            self.live_figure,
            self.transcript,
            self.table,
            self.figures,
        ])

    # -- display and waiting -------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def busy(self) -> bool:
        """True while a job runs."""
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job (if any) is over; False if ``timeout`` seconds passed first."""
        return self._done.wait(timeout)

    # -- what the controls ask for -------------------------------------------------------------

    def config(self):
        """The :class:`whisperkit.Config` the controls describe (raises ConfigError if invalid)."""
        from whisperkit.core.config import Config

        return Config(
            model=self.model_name(),
            device=self.device.value,
            compute_type=self.compute_type.value,
            mode=self.mode.value,
            batch_size="auto" if self.batch_auto.value else int(self.batch_size.value),
        )

    def model_name(self) -> str | None:
        """The model folder if one is typed, else the dropdown's name (None: the bundled tiny.en)."""
        folder = self.model_path.value.strip()
        if folder:
            return os.path.expanduser(folder)
        return None if self.model.value == BUNDLED_CHOICE else self.model.value

    def audio_source(self) -> str:
        """The audio file to use: the typed (or uploaded) path, else the chosen bundled sample."""
        from whisperkit.core.samples import sample_path

        typed = self.audio_path.value.strip()
        return os.path.expanduser(typed) if typed else sample_path(self.audio.value)

    # -- control handlers ----------------------------------------------------------------------

    def _on_upload(self, change) -> None:
        """Save the uploaded file to the app's temporary folder and put its path in ``audio_path``."""
        files = change["new"]
        if not files:
            return
        upload = files[-1]
        path = os.path.join(self._upload_dir, _safe_file_name(upload["name"]))
        with open(path, "wb") as handle:
            handle.write(bytes(upload["content"]))
        self.audio_path.value = path

    def _on_batch_controls(self, change=None) -> None:
        self.batch_size.disabled = self.mode.value == "sequential" or self.batch_auto.value
        self.batch_auto.disabled = self.mode.value == "sequential"

    # -- running a job ---------------------------------------------------------------------------

    def _start(self, action: str) -> None:
        with self._lock:
            if self.busy:
                return
            self._done.clear()
        for button in self._buttons:
            button.disabled = True
        self.message.value = ""
        self.last_error = None
        self._job_label = {"transcribe": "Transcribing", "compare": "Comparing before and after",
                           "sweep": "Sweeping batch sizes"}[action]
        self._job_started = time.monotonic()
        self.progress.value, self.progress.max, self.progress.bar_style = 0, 1, "info"
        self.status.value = f"{self._job_label}..."
        threading.Thread(target=self._work, args=(action,), name="whisperkit-app", daemon=True).start()

    def _work(self, action: str) -> None:
        stop_ticker = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(stop_ticker,), name="whisperkit-app-live", daemon=True)
        try:
            audio, config = self.audio_source(), self.config()
            ticker.start()
            jobs = {"transcribe": self._transcribe, "compare": self._compare, "sweep": self._sweep}
            result = jobs[action](audio, config)
            stop_ticker.set()
            self._stop_live(ticker)
            self._show(result)
            self.last_result = result
            self.progress.value, self.progress.bar_style = self.progress.max, "success"
            self.status.value = f"Done in {time.monotonic() - self._job_started:.1f} s."
        except WhisperkitError as error:
            self._fail(error, first_line(error))
        except Exception as error:  # anything else: a short message in the app, never a traceback
            self._fail(error, f"{type(error).__name__}: {first_line(error)}")
        finally:
            stop_ticker.set()
            try:
                self._stop_live(ticker)
            except Exception:  # the chart is secondary: the buttons must come back whatever happens
                _log.warning("whisperkit app: could not update the live chart", exc_info=True)
            for button in self._buttons:
                button.disabled = False
            self._done.set()

    def _transcribe(self, audio: str, config):
        from whisperkit.experiments import runners

        return runners.run(audio, config, progress=False, on_start=self._watch)

    def _compare(self, audio: str, config):
        from whisperkit.experiments import runners

        chosen = {"model": config.model, "device": config.device, "compute_type": config.compute_type}
        before = runners.SEED_BEFORE.replace(**chosen)
        after = runners.SEED_AFTER.replace(**chosen)
        self.progress.max = 2
        self._job_label = "Comparing: before (sequential, num_workers=24)"

        def finished(side, run_):
            self.progress.value += 1
            self._job_label = "Comparing: after (batched)"

        return runners.compare(audio, before, after, progress=False, on_start=self._watch, on_run=finished)

    def _sweep(self, audio: str, config):
        from whisperkit.experiments import runners

        self.progress.max = len(SWEEP_SIZES)
        self._job_label = f"Sweeping batch sizes: {SWEEP_SIZES[0]} (1 of {len(SWEEP_SIZES)})"

        def finished(size, run_):
            self.progress.value += 1
            if self.progress.value < len(SWEEP_SIZES):
                following = SWEEP_SIZES[self.progress.value]
                self._job_label = f"Sweeping batch sizes: {following} ({self.progress.value + 1} of {len(SWEEP_SIZES)})"

        return runners.sweep(audio, SWEEP_SIZES, config.replace(mode="batched"), progress=False,
                                on_start=self._watch, on_run=finished)

    def _fail(self, error: BaseException, text: str) -> None:
        self.last_error = error
        self.message.value = (f'<span style="color:{ERROR_COLOR}"><b>Error:</b> '
                              f"{html.escape(text)}</span>")
        self.progress.bar_style = "danger"
        self.status.value = f"Failed after {time.monotonic() - self._job_started:.1f} s."

    # -- the live chart --------------------------------------------------------------------------

    def _watch(self, sampler) -> None:
        """Make ``sampler`` the source of the live chart (runners.run's ``on_start``)."""
        with self._lock:
            self._live_sampler = sampler
            self._live_index = 0
            self._live_data = {}
        with self.live_figure.batch_update():
            for trace in self.live_figure.data:
                trace.x, trace.y = (), ()

    def _tick(self, stop) -> None:
        try:
            while not stop.wait(LIVE_REFRESH_S):
                self._refresh_live(status=True)
        except Exception:  # a broken chart must not stop the job; say so once, in the log
            _log.warning("whisperkit app: the live chart stopped updating", exc_info=True)

    def _stop_live(self, ticker: threading.Thread) -> None:
        if ticker.is_alive():
            ticker.join()
        self._refresh_live()

    def _refresh_live(self, status: bool = False) -> None:
        """Append the samples taken since the last refresh to the live chart; ``status``: also
        say in the status line what runs and for how long."""
        with self._lock:
            sampler = self._live_sampler
            if sampler is None:
                return
            new = sampler.samples(self._live_index)
            self._live_index += len(new)
            data = self._live_data
            for record in new:
                for column, name in _live_series(record):
                    xs, ys = data.setdefault(name, ([], []))
                    xs.append(record["time_s"])
                    ys.append(record[column])
            series = {name: (tuple(xs), tuple(ys)) for name, (xs, ys) in data.items()}
            phase = _last_mark(sampler)
        traces = {trace.name: trace for trace in self.live_figure.data}
        with self.live_figure.batch_update():
            for name, (xs, ys) in series.items():
                if name not in traces:
                    self.live_figure.add_scatter(x=xs, y=ys, mode="lines", name=name)
                else:
                    traces[name].x, traces[name].y = xs, ys
        if status and self.busy:
            elapsed = time.monotonic() - self._job_started
            self.status.value = html.escape(f"{self._job_label}{f' ({phase})' if phase else ''}: {elapsed:.1f} s")

    # -- showing a result --------------------------------------------------------------------------

    def _show(self, result) -> None:
        import plotly.graph_objects as go

        from whisperkit.experiments.results import Comparison, Sweep
        from whisperkit.views import plots

        if isinstance(result, Comparison):
            texts = [("before", result.before.transcript.text), ("after", result.after.transcript.text)]
            table = (f"<p>Speed-up (before wall / after wall): <b>{result.speedup:.2f}x</b>; "
                     f"word error rate between the two texts: {result.wer_between:.3f}</p>")
            side_by_side = [_html_table(result.table().drop(index="text", errors="ignore"))]
            if result.differences:
                import pandas as pd

                side_by_side.append("<div><b>What differs between the two sides</b>"
                                    + _html_table(pd.DataFrame(result.differences), index=False) + "</div>")
            table += ('<div style="display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start">'
                      + "".join(side_by_side) + "</div>")
            figures = [plots.timeline(result), plots.summary(result)]
            notes = _notes(result.after)
        elif isinstance(result, Sweep):
            best = result.best
            best_run = next((r for r in result.runs if r.transcript.config.get("batch_size") == best), None)
            shown = best_run or (result.runs[-1] if result.runs else None)
            texts = [(f"batch size {best}", shown.transcript.text)] if shown is not None else []
            table = _html_table(result.table(), float_format=lambda v: f"{v:.2f}")
            table += f"<p>Fastest batch size: <b>{best}</b> ({html.escape(result.stopped_because)})</p>"
            figures = [plots.sweep(result), plots.timeline(result.runs)]
            notes = _notes(shown) if shown is not None else []
        else:
            texts = [("", result.transcript.text)]
            table = _html_table(result.table(), header=False)
            figures = [plots.timeline(result), plots.summary(result)]
            notes = _notes(result)
        self.transcript.value = "".join(
            f'<p style="white-space:pre-wrap;line-height:1.4;margin:2px 0">'
            f'{f"<b>{html.escape(label)}:</b> " if label else ""}'
            f"{html.escape(text) or '<i>(no speech found)</i>'}</p>"
            for label, text in texts
        )
        self.table.value = table + "".join(f"<p><i>{html.escape(note)}</i></p>" for note in notes)
        self.figures.children = [go.FigureWidget(figure) for figure in figures]


TABLE_STYLE = (
    "<style>.wk-table{border-collapse:collapse;font-size:12px;line-height:1.35;margin:4px 0}"
    ".wk-table th,.wk-table td{border:1px solid #d0d0d0;padding:2px 8px;text-align:right}"
    ".wk-table thead th{background:#f3f3f3}</style>"
)


def _html_table(frame, **options) -> str:
    """A DataFrame as compact HTML with missing values (None or NaN) shown as "-"."""
    shown = frame.astype(object).where(frame.notna(), "-")
    return TABLE_STYLE + shown.to_html(border=0, classes="wk-table", **options)


def _notes(run_) -> list[str]:
    notes = list(run_.transcript.warnings)
    notes += [f"batch size {retry['batch_size']} ran out of memory and was halved ({retry['error']})"
              for retry in run_.transcript.batch_retries]
    if run_.gpu_unavailable_reason:
        notes.append(f"GPU: {run_.gpu_unavailable_reason}")
    return notes


def _live_series(record: dict):
    """(column, trace name) pairs of a sample that the live chart shows."""
    from whisperkit.measure.columns import gpu_column, gpu_indices

    yield "cpu_percent", "CPU % (system)"
    yield "process_cpu_percent", "CPU % (this process)"
    for index in gpu_indices(record):
        yield gpu_column(index, "util_percent"), f"GPU {index} util %"


def _last_mark(sampler) -> str:
    marks = sampler.marks
    return str(marks["label"].iloc[-1]) if len(marks) else ""


def _live_layout(go):
    return go.Layout(
        title={"text": "Live utilization", "font": {"size": 14}},
        height=260,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        xaxis={"title": {"text": "seconds"}},
        yaxis={"title": {"text": "%"}, "range": [0, 105]},
        legend={"orientation": "h", "y": -0.25},
    )


def _safe_file_name(name: str) -> str:
    base = os.path.basename(name or "upload")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base) or "upload"
