"""The notebook app: pick a model, a device and a batch size, transcribe, watch CPU and GPU live.

>>> import whisperkit as wk
>>> a = wk.app()         # doctest: +SKIP   an ipywidgets VBox: the last value of a cell shows it
>>> a                    # doctest: +SKIP
>>> ipywidgets.Tab([a, my_other_widget])   # doctest: +SKIP   or nest it in a layout of your own

Every control is an attribute, so code (and tests) can drive the app as a user would::

    a.audio.value = "aesop_02"; a.mode.value = "sequential"
    a.transcribe_button.click()
    a.wait()                       # the work runs on a background thread
    a.last_result.transcript.text  # a Run, Comparison or Sweep

While a job runs the buttons are disabled and a live chart shows CPU utilization (the whole
machine and this process) and, where NVML sees NVIDIA GPUs, each GPU's utilization, redrawn at
most twice a second. A :class:`whisperkit.WhisperkitError` (a missing file, CUDA asked for where
there is none, an unknown model) shows as one red line in the app; so does any other exception,
as its type and first line. The exception itself is kept in ``last_error``.

Compare and Sweep run 3 alternating repeats unless ``quick`` is ticked (one run each, labelled as
such); Compare's after side uses the batch-size slider, Sweep the sizes typed in ``sweep_sizes``;
``plan`` says under the buttons what each one runs and which controls it does not use. The run
folder row saves the last result (``wk.load_run`` / ``wk.load_runs`` read it in a notebook),
exports its HTML report, and loads a saved folder back into the app.

The parts, one module each: ``controls`` (the inputs and the Config they describe), ``jobs``
(transcribe, compare, sweep), ``live`` (the live chart), ``results`` (transcript, table, figures),
``storage`` (save, export, load) and ``window`` (:class:`~whisperkit.views.app.window.App`, which holds them and runs the jobs on a
background thread). ipywidgets and plotly are imported only when an app is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from whisperkit.views.app.window import App

__all__ = ["App", "app"]


def app() -> App:
    """A new app (an ipywidgets ``VBox``, see :class:`~whisperkit.views.app.window.App`)."""
    from whisperkit.views.app.window import App

    return App()


def __getattr__(name: str) -> object:
    if name == "App":
        from whisperkit.views.app.window import App

        return App
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
