"""The app itself: an ipywidgets ``VBox`` holding the controls, the job status, the live chart and
the result area, and running one job at a time on a background thread."""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

import ipywidgets

from whisperkit.errors import WhisperkitError, first_line
from whisperkit.views.app import jobs
from whisperkit.views.app.controls import Controls
from whisperkit.views.app.live import REFRESH_S, LiveChart
from whisperkit.views.app.results import ResultView
from whisperkit.views.app.storage import RunFolder

if TYPE_CHECKING:
    from whisperkit.core.config import Config
    from whisperkit.views.app.storage import Shown

ERROR_COLOR = "#b00020"
DONE_COLOR = "#1b5e20"
TITLE = "<b>whisperkit</b>: transcribe, and watch how the CPU and GPU are used"

_log = logging.getLogger(__name__)


class App(ipywidgets.VBox):
    """The widget app, itself a ``VBox``: display it, or put it in an ``HBox`` or ``Tab`` of your own.

    Its parts are ``controls`` (:class:`~whisperkit.views.app.controls.Controls`), ``live``
    (:class:`~whisperkit.views.app.live.LiveChart`) and ``results``
    (:class:`~whisperkit.views.app.results.ResultView`); their widgets are also attributes of the
    app: ``model``, ``model_path``, ``device``, ``compute_type``, ``mode``, ``batch_size``,
    ``batch_auto``, ``audio``, ``audio_path``, ``upload``, ``folder``, ``pack`` (corpus mode),
    ``repeats``, ``quick``, ``sweep_sizes``, the three buttons, ``plan``; ``live_figure``;
    ``run_folder`` and the ``save_button``, ``export_button`` and ``load_button`` of
    :class:`~whisperkit.views.app.storage.RunFolder` (``files``);
    ``transcript``, ``table``, ``figures``. Its own: ``progress`` (IntProgress over the job's
    steps), ``status`` (HTML: what runs and for how long), ``message`` (HTML: a one-line error, red).

    State: ``busy``, ``last_result`` (the Run, Comparison or Sweep of the last job that
    succeeded, or the run or runs loaded), ``last_error`` (the exception of the last job that failed, else None);
    ``wait(timeout)`` blocks until the current job is over.
    """

    def __init__(self) -> None:
        import pandas  # noqa: F401  imported here, not first in two threads at once (plotly checks it)

        import whisperkit.experiments.runners  # noqa: F401  likewise: the job thread then finds it loaded

        super().__init__()
        self.controls = Controls()
        self.live = LiveChart()
        self.results = ResultView()
        self.files = RunFolder()
        for name in ("model", "model_path", "device", "compute_type", "mode", "batch_size", "batch_auto", "audio",
                     "audio_path", "upload", "folder", "pack", "repeats", "quick", "sweep_sizes", "plan",
                     "transcribe_button", "compare_button", "sweep_button"):
            setattr(self, name, getattr(self.controls, name))
        self.run_folder = self.files.folder
        self.save_button, self.export_button, self.load_button = self.files.buttons
        self.live_figure = self.live.figure
        self.transcript, self.table, self.figures = self.results.transcript, self.results.table, self.results.figures
        self.progress = ipywidgets.IntProgress(value=0, min=0, max=1, description="",
                                               layout=ipywidgets.Layout(width="200px"))
        self.status = ipywidgets.HTML(value="Ready.")
        self.message = ipywidgets.HTML(value="")
        self.last_result: Shown | None = None
        self.last_error: BaseException | None = None
        self._done = threading.Event()
        self._done.set()
        self._lock = threading.Lock()
        self._job_label = ""
        self._job_started = 0.0
        for action, button in zip(("transcribe", "compare", "sweep"), self.controls.buttons):
            button.on_click(lambda _, action=action: self._start(action))
        for action, button in zip(("save", "export", "load"), self.files.buttons):
            button.on_click(lambda _, action=action: self._file_action(action))
        self.children = [ipywidgets.HTML(TITLE), self.controls.box, self.files.box,
                         ipywidgets.HBox([self.progress, self.status]), self.message, self.live.figure,
                         self.results.transcript, self.results.table, self.results.figures]

    @property
    def busy(self) -> bool:
        """True while a job runs."""
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job (if any) is over; False if ``timeout`` seconds passed first."""
        return self._done.wait(timeout)

    def config(self) -> Config:
        """The :class:`whisperkit.Config` the controls describe (raises ConfigError if invalid)."""
        return self.controls.config()

    def _start(self, action: str) -> None:
        with self._lock:
            if self.busy:
                return
            self._done.clear()
        self._enable(False)
        self.message.value = ""
        self.last_error = None
        self._job_label = jobs.LABELS[action]
        self._job_started = time.monotonic()
        self.progress.value, self.progress.max, self.progress.bar_style = 0, 1, "info"
        self.status.value = f"{self._job_label}..."
        threading.Thread(target=self._work, args=(action,), name="whisperkit-app", daemon=True).start()

    def _work(self, action: str) -> None:
        stop = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(stop,), name="whisperkit-app-live", daemon=True)
        try:
            audio, config = self.controls.audio_source(), self.controls.config()
            job = jobs.Job(watch=self.live.watch, step=self._step, hold=self.live.hold,
                           repeats=self.controls.repeat_count(),
                           sweep_sizes=self.controls.sweep_batch_sizes() if action == "sweep" else ())
            self.live.reset()
            ticker.start()
            result = jobs.JOBS[action](audio, config, job)
            self._stop_ticker(stop, ticker)
            self.results.show(result)
            self.last_result = result
            self.progress.value, self.progress.bar_style = self.progress.max, "success"
            self.status.value = f"Done in {time.monotonic() - self._job_started:.1f} s."
        except WhisperkitError as error:
            self._fail(error, first_line(error))
        except Exception as error:  # anything else: a short message in the app, never a traceback
            self._fail(error, f"{type(error).__name__}: {first_line(error)}")
        finally:
            try:
                self._stop_ticker(stop, ticker)
            except Exception:  # the chart is secondary: the buttons must come back whatever happens
                _log.warning("whisperkit app: could not update the live chart", exc_info=True)
            self._enable(True)
            self._done.set()

    def _enable(self, enabled: bool) -> None:
        self.controls.enable(enabled)
        self.files.enable(enabled, self.last_result is not None)

    def _file_action(self, action: str) -> None:
        """Save, export or load (quick, on the notebook's thread); a failure is one red line."""
        from whisperkit.views.app import storage

        if self.busy:
            return
        self.message.value = ""
        try:
            if action == "load":
                loaded = storage.load(os.path.expanduser(self.run_folder.value.strip()) or ".")
                self.results.show(loaded)
                self.last_result = loaded
                said = f"Loaded {self.run_folder.value.strip()}."
            else:
                if self.last_result is None:
                    return
                folder = self.files.target(self.last_result)
                said = (storage.save if action == "save" else storage.export)(self.last_result, folder)
                self.run_folder.value = folder
        except WhisperkitError as error:
            self._fail(error, first_line(error), job=False)
        except Exception as error:  # never a traceback in the app
            self._fail(error, f"{type(error).__name__}: {first_line(error)}", job=False)
        else:
            self.message.value = f'<span style="color:{DONE_COLOR}">{html.escape(said)}</span>'
        self._enable(True)

    def _step(self, done: int, total: int, label: str) -> None:
        self.progress.max, self.progress.value = total, done
        self._job_label = label

    def _tick(self, stop: threading.Event) -> None:
        try:
            while not stop.wait(REFRESH_S):
                phase = self.live.refresh()
                if self.busy:
                    elapsed = time.monotonic() - self._job_started
                    self.status.value = html.escape(f"{self._job_label}{f' ({phase})' if phase else ''}: {elapsed:.1f} s")
        except Exception:  # a broken chart must not stop the job; say so once, in the log
            _log.warning("whisperkit app: the live chart stopped updating", exc_info=True)

    def _stop_ticker(self, stop: threading.Event, ticker: threading.Thread) -> None:
        stop.set()
        if ticker.is_alive():
            ticker.join()
        self.live.refresh()

    def _fail(self, error: BaseException, text: str, *, job: bool = True) -> None:
        self.last_error = error
        self.message.value = f'<span style="color:{ERROR_COLOR}"><b>Error:</b> {html.escape(text)}</span>'
        if job:
            self.progress.bar_style = "danger"
            self.status.value = f"Failed after {time.monotonic() - self._job_started:.1f} s."
