"""Joining or starting the Ray the Ray engine runs on, quietly, and refusing what cannot work.

:func:`connect` with no address starts a Ray of this process's own on this machine
(``ray.init(address="local")``): it never joins a cluster that another process or user started
here and Ray recorded in its temporary folder (``ray.init()``'s own default), nor a recorded
cluster that has since stopped. ``RAY_ADDRESS`` in the environment counts as an address given
(``ray job submit`` sets it). An address is tried with a plain TCP connection first, so an
unreachable one fails in one line within :data:`REACH_SECONDS` instead of Ray retrying for
minutes. A Ray this process already joined (``ray.init`` by the caller) is used as it is.

Quiet: Ray's start-up warnings that a user cannot act on (token authentication enabled by
default, Ray Data's notes on its actor pool and progress bars) are kept from the notebook and
the terminal, and the workers' own output stays in Ray's log files (``log_to_driver=False``).
Ray's C++ core logs to standard error too, in red in a notebook: that an actor's constructor
arguments sit in the object store while it may be restarted (Ray Data's actor pool always
does), and "worker died" lines when a model worker is killed (which the engine survives). A Ray
started or joined here therefore logs only fatal errors of its core (``RAY_BACKEND_LOG_LEVEL``,
unless set already: ``RAY_BACKEND_LOG_LEVEL=warning`` brings them back).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from whisperkit.errors import ConfigError, first_line

RAY_MISSING = "engine 'ray' needs Ray, which is not installed here: pip install 'whisperkit[ray]'"
# Ray's raylet gives up when its helper processes take over 30 s to start (a busy machine): try again
START_ATTEMPTS = 3
REACH_SECONDS = 5.0  # how long the TCP check of a cluster's address waits
BACKEND_LOG_LEVEL = "RAY_BACKEND_LOG_LEVEL"  # the environment variable of Ray's C++ log level
# Ray's loggers whose warnings say nothing a user of whisperkit can act on, quieted meanwhile
QUIET_LOGGERS = ("ray._private.authentication", "ray.data", "ray._private.worker", "ray.actor", "ray._private.utils")
# Ray Data warnings of the same kind (a pool with fewer batches than actors; arguments Ray Data sets itself)
QUIET_WARNINGS = ("The minimum number of concurrent actors", "max_restarts", "max_task_retries")


def require_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`ConfigError` saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs ray[data])
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """Log only errors from :data:`QUIET_LOGGERS` meanwhile, and drop :data:`QUIET_WARNINGS`."""
    import warnings

    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for message in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=f".*{message}")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def connect(address: str | None = None) -> dict:
    """Start a Ray of this process's own (``address`` None and no ``RAY_ADDRESS``), or join the
    cluster at ``address``; reuse one this process already joined.

    Returns ``{"address", "started", "seconds", "cpus", "gpus", "nodes", "node_cpus"}``:
    ``started`` is True when this call started Ray, ``seconds`` how long joining or starting
    took, ``node_cpus`` each live node's CPUs (see :mod:`~whisperkit.core.corpus.engines.ray_plan`).

    This process's whisperkit is sent to the workers with the job (Ray's ``py_modules``), so
    every node runs the driver's version of it; its dependencies (faster-whisper, ...) must be
    installed on every node. Where Ray was started before (``ray.init`` by the caller), the
    workers import the whisperkit their nodes have.
    """
    ray = require_ray()
    started_at = time.perf_counter()
    started = False
    target = address if address is not None else os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        if target is not None:
            target = check_reachable(target)
        _start(ray, target)
        started = target is None
    return {"address": target or "local", "started": started, "seconds": time.perf_counter() - started_at,
            **cluster_resources(ray)}


def cluster_resources(ray: Any) -> dict:
    """``{"cpus", "gpus", "nodes", "node_cpus"}`` of the cluster this process joined (live nodes)."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    return {"cpus": float(sum(node["Resources"].get("CPU", 0.0) for node in nodes)),
            "gpus": float(sum(node["Resources"].get("GPU", 0.0) for node in nodes)), "nodes": len(nodes),
            "node_cpus": sorted((float(node["Resources"].get("CPU", 0.0)) for node in nodes), reverse=True)}


def _start(ray: Any, target: str | None) -> None:
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                  runtime_env={"py_modules": [package]})
    if target is None:
        kwargs.update(address="local", num_cpus=os.cpu_count() or 1)
    else:
        kwargs["address"] = target
    os.environ.setdefault(BACKEND_LOG_LEVEL, "fatal")  # read by Ray's core as it starts, here and in its processes
    for attempt in range(START_ATTEMPTS):
        try:
            with quiet_ray(), _native_stderr_dropped():  # Ray's core says it read the log level, on fd 2
                ray.init(**kwargs)
            return
        except Exception as error:  # Ray raises a bare Exception when its processes start too slowly
            ray.shutdown()
            if target is None and attempt + 1 < START_ATTEMPTS and "timed out" in str(error):
                continue
            where = f"the Ray cluster at {target}" if target else "a local Ray"
            raise ConfigError(f"cannot start or join {where} ({first_line(error)}); " + (
                "check the address (HOST:6379 or ray://HOST:10001) and that the cluster runs" if target
                else "a busy machine starts Ray slowly: try again, or start one with 'ray start --head'")) from None


@contextlib.contextmanager
def _native_stderr_dropped() -> Iterator[None]:
    """Meanwhile, what is written to file descriptor 2 (where Ray's C++ core logs) goes nowhere;
    a failure to start comes back as an exception, said in one line by :func:`connect`."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (an embedded interpreter)
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def check_reachable(address: str) -> str:
    """``address`` (``HOST:PORT``, ``ray://HOST:PORT``, or ``auto``: the cluster recorded on this
    machine) if something answers there within :data:`REACH_SECONDS`, else a one-line :class:`ConfigError`."""
    given = address
    if address == "auto":
        address = recorded_cluster() or ""
        if not address:
            raise ConfigError("ray address 'auto': no Ray cluster is recorded on this machine; give HOST:6379, "
                              "or no address to start a local Ray")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray address {given!r}: expected HOST:PORT (HOST:6379) or ray://HOST:PORT (ray://HOST:10001)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_SECONDS).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__ if not isinstance(error, TimeoutError) else "no answer"
        raise ConfigError(f"cannot reach the Ray cluster at {given} ({reason}); check the address "
                          f"(HOST:6379 or ray://HOST:10001) and that the cluster runs") from None
    return address


def recorded_cluster() -> str | None:
    """The address Ray recorded for the last cluster started on this machine (``ray start``), if any."""
    path = os.path.join(os.environ.get("RAY_TMPDIR", "/tmp"), "ray", "ray_current_cluster")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


__all__ = ["RAY_MISSING", "check_reachable", "cluster_resources", "connect", "quiet_ray", "require_ray"]
