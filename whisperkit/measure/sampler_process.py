"""The sampler's own process: ``python -m whisperkit.measure.sampler_process SETTINGS_JSON``.

Started (spawned, never forked) by :class:`whisperkit.measure.sampler.Sampler`, it shares no GIL
with the code it watches. It writes one JSON line per message to its standard output:

- ``{"started": {"t0": ..., "columns": [...], "gpu_available": ..., "gpu_unavailable_reason": ...,
  "mig_instances": {...}}}``
  once, where ``t0`` is its ``time.monotonic()`` at the first sample (CLOCK_MONOTONIC is
  system-wide on Linux, so the parent's marks line up with it);
- ``{"sample": [values in column order], "errors": [...], "process_util_reason": ...,
  "column_reasons": {...}}`` per sample, the last two only when they changed;
- ``{"done": {"cpu_s": ..., "startup_cpu_s": ...}}`` after the last sample;
- ``{"failed": "message"}`` when it cannot start (a one-line reason).

It samples at ``t0 + k * interval`` (skipping slots that passed) until a ``stop`` line or the end
of its standard input: the parent closing the pipe, or dying, ends it; so does the parent's PID
changing (it was re-parented). It ignores SIGINT: Ctrl-C in a terminal reaches the whole process
group, and the parent decides when to stop (it takes one last sample then).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time

_log = logging.getLogger("whisperkit.sampler")


def main(argv: list[str]) -> int:
    settings = json.loads(argv[0])
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr  # nothing else may write to the message stream
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    stop = threading.Event()
    threading.Thread(target=_wait_for_stop, args=(stop,), daemon=True).start()
    try:
        from whisperkit.measure.probes import Probes

        probes = Probes(settings["pid"], settings["gpus"], exclude=frozenset({os.getpid()}),
                        cuda_index=int(settings.get("cuda_index", 0)))
    except Exception as error:  # a one-line reason for the parent, which raises it
        _send(out, {"failed": f"{str(error).splitlines()[0] if str(error) else ''} ({type(error).__name__})"})
        return 1
    cpu = {"startup": math.nan}
    try:
        _sample_until_stopped(out, probes, float(settings["interval"]), stop, parent, cpu)
    finally:
        probes.close()
        _send(out, {"done": {"cpu_s": time.process_time() - cpu["startup"], "startup_cpu_s": cpu["startup"]}})
        out.close()
    return 0


def _sample_until_stopped(out, probes, interval: float, stop: threading.Event, parent: int, cpu: dict) -> None:
    t0 = time.monotonic()
    _send(out, {"started": {"t0": t0, "columns": probes.columns, "gpu_available": probes.gpu_available,
                            "gpu_unavailable_reason": probes.gpu_unavailable_reason,
                            "mig_instances": {str(i): uuid for i, uuid in probes.mig_instances.items()}}})
    reason = _sample(out, probes, t0, t0, _Reasons())
    cpu["startup"] = time.process_time()  # start-up ends with the first sample (its lazy imports)
    slot = 1
    while not stop.wait(max(0.0, t0 + slot * interval - time.monotonic())):
        if os.getppid() != parent:  # the parent died and this process was re-parented
            return
        reason = _sample(out, probes, t0, time.monotonic(), reason)
        slot = max(slot + 1, math.floor((time.monotonic() - t0) / interval) + 1)
    _sample(out, probes, t0, time.monotonic(), reason)  # the last one, at stop


class _Reasons:
    """What the parent was last told: the process-utilization reason and the column reasons."""

    def __init__(self) -> None:
        self.process_util: str | None = None
        self.columns: dict[str, str] = {}


def _sample(out, probes, t0: float, now: float, reason: _Reasons) -> _Reasons:
    message: dict = {}
    try:
        record, errors = probes.read(now, now - t0)
        message = {"sample": [record.get(column, math.nan) for column in probes.columns], "errors": errors}
    except Exception:  # a bug must not end the sampling: lose this sample, say so
        _log.exception("whisperkit sampler: a sample failed")
        message = {"errors": ["sample"], "time_s": now - t0}
    if probes.process_util_reason != reason.process_util:
        reason.process_util = message["process_util_reason"] = probes.process_util_reason
    columns = probes.column_reasons
    if columns != reason.columns:
        reason.columns = message["column_reasons"] = columns
    _send(out, message)
    return reason


def _send(out, message: dict) -> None:
    try:
        out.write(json.dumps(message) + "\n")
        out.flush()
    except (BrokenPipeError, ValueError, OSError):  # the parent is gone
        raise SystemExit(0) from None


def _wait_for_stop(stop: threading.Event) -> None:
    """Set ``stop`` at a ``stop`` line or at the end of standard input (the parent closed it or died)."""
    try:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
    except (OSError, ValueError):
        pass
    stop.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
