"""Shared fixtures: the bundled model, the bundled speech, and the CLI run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import whisperkit as wk
from whisperkit.core.samples import reference_text, short_clips

try:
    from tests import machine
except ImportError:
    import machine


# The fast tier (``make test-fast``, ``pytest --fast``): every test that needs no Whisper model.
# A test that loads one, in this process or in a CLI subprocess, is skipped at the moment it would.
# These modules run the model in a kernel, a browser or a Ray worker, where that moment cannot be
# caught, so the fast tier leaves them out whole, as it does tests marked ``model`` (a model loaded
# by a script of their own).
# By file name (unique across the folders): product/, core/corpus/ and views/.
NEEDS_MODEL_MODULES = ("test_notebooks.py", "test_browser.py", "test_ray_engine.py", "test_ray_cluster.py", "test_widgets.py")
FAST_SKIP_REASON = "loads the Whisper model: run by make test, not by the fast tier"


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true", help="the fast tier: skip every test that loads a Whisper model")


def pytest_configure(config):
    # read the real machine once, before any test puts a fake pynvml or ctranslate2 in place
    machine.auto_device()
    machine.nvml_gpus()
    if config.getoption("--fast"):
        _skip_model_loads()


FAST = {"on": False}
# the CLI as ``python -m whisperkit`` runs it, but a model load ends it with exit status 77
_FAST_CLI = ("import os, runpy, faster_whisper\n"
             "faster_whisper.WhisperModel.__init__ = lambda *a, **k: os._exit(77)\n"
             "runpy.run_module('whisperkit', run_name='__main__', alter_sys=True)")
_FAST_CLI_MODEL_LOAD = 77


def _skip_model_loads() -> None:
    """Make every model load skip its test (the fast tier): in this process and in CLI runs."""
    FAST["on"] = True
    import faster_whisper

    def skip_instead(self, *args, **kwargs):
        pytest.skip(FAST_SKIP_REASON)

    faster_whisper.WhisperModel.__init__ = skip_instead  # type: ignore[method-assign]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a usable CUDA GPU: skipped, with the reason, where there is none.
    In the fast tier the modules of :data:`NEEDS_MODEL_MODULES` are skipped too."""
    if config.getoption("--fast"):
        fast_skip = pytest.mark.skip(reason=FAST_SKIP_REASON)
        for item in items:
            if item.path.name in NEEDS_MODEL_MODULES or item.get_closest_marker("model"):
                item.add_marker(fast_skip)
    device, reason = machine.auto_device()
    if device == "cuda":
        return
    skip = pytest.mark.skip(reason=f"needs a usable CUDA GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def offline_hub(monkeypatch):
    """The Hugging Face hub offline, so a test that must not download fails fast instead."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        import huggingface_hub.constants as hub_constants
    except ImportError:
        return
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def model():
    """The bundled tiny.en where ``device="auto"`` puts it (the CPU unless a usable GPU), loaded once."""
    return wk.load_model()


@pytest.fixture(scope="session")
def long_sample() -> str:
    return wk.sample_path("gettysburg")


@pytest.fixture(scope="session")
def long_reference(long_sample) -> str:
    return reference_text(long_sample)


@pytest.fixture(scope="session")
def clips() -> list[str]:
    return short_clips()


@pytest.fixture(scope="session")
def batched(model, long_sample):
    """The long sample transcribed in batched mode (batch size 8)."""
    return wk.transcribe(long_sample, model=model, mode="batched", batch_size=8, progress=False)


@pytest.fixture(scope="session")
def sequential(model, long_sample):
    """The long sample transcribed in sequential mode."""
    return wk.transcribe(long_sample, model=model, mode="sequential", progress=False)


def run_cli(*args: str, timeout: float = 300, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m whisperkit ARGS`` in a subprocess, as a user would from a terminal.

    The Hugging Face hub is offline in it: no test downloads a model.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", _FAST_CLI] if FAST["on"] else [sys.executable, "-m", "whisperkit"]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    if FAST["on"] and result.returncode == _FAST_CLI_MODEL_LOAD:
        pytest.skip(FAST_SKIP_REASON)
    return result


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture
def fail_above(monkeypatch):
    """``fail_above(owner, name, size, message)``: make the method ``owner.name`` raise
    ``RuntimeError(message)`` when its first argument holds more than ``size`` items, as CUDA,
    cuBLAS or cuDNN fail a batch too large for memory; smaller calls run as before."""

    def install(owner, name: str, size: int, message: str) -> None:
        real = getattr(owner, name)

        def failing(self, items, *args, **kwargs):
            if len(items) > size:
                raise RuntimeError(message)
            return real(self, items, *args, **kwargs)

        monkeypatch.setattr(owner, name, failing)

    return install


@pytest.fixture(scope="session")
def bad_audio(tmp_path_factory, long_sample):
    """Files a user might pass by mistake, made on the spot from the bundled sample."""
    import random

    folder = tmp_path_factory.mktemp("bad_audio")
    data = open(long_sample, "rb").read()
    files = {
        "missing": folder / "missing.flac",
        "directory": folder / "a_folder",
        "empty_bytes": folder / "empty.flac",
        "text": folder / "notes.txt",
        "noise": folder / "noise.flac",
        "truncated": folder / "truncated.flac",
    }
    files["directory"].mkdir()
    files["empty_bytes"].write_bytes(b"")
    files["text"].write_text("this is not audio\n")
    rng = random.Random(7)
    files["noise"].write_bytes(bytes(rng.randrange(256) for _ in range(30_000)))
    files["truncated"].write_bytes(data[: len(data) // 3])
    return {name: str(path) for name, path in files.items()}


@pytest.fixture(scope="session")
def quiet_audio(tmp_path_factory):
    """A valid WAV with no samples and one of 3 s of digital silence."""
    import wave

    folder = tmp_path_factory.mktemp("quiet_audio")
    paths = {}
    for name, seconds in (("empty", 0), ("silence", 3)):
        path = folder / f"{name}.wav"
        with wave.open(str(path), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            handle.writeframes(b"\x00\x00" * 16000 * seconds)
        paths[name] = str(path)
    return paths


NO_NVML_REASON = "NVML unavailable: NVIDIA driver library not found (NVMLError_LibraryNotFound); recording CPU only"


def cpu_only(run):
    """``run`` as a machine without an NVIDIA driver records it: no GPU columns, metrics or GPUs,
    and NVML's reason. Figures and reports of the no-GPU case are then the same on every machine."""
    import dataclasses

    from whisperkit.measure.columns import parse_gpu_column

    timeline = run.timeline[[c for c in run.timeline.columns if parse_gpu_column(c) is None]]
    metrics = {k: (None if "gpu" in k else v) for k, v in run.metrics.items()}
    environment = {**run.environment, "gpus": [], "gpu_unavailable_reason": NO_NVML_REASON.split(";")[0]}
    return dataclasses.replace(run, utilization=dataclasses.replace(run.utilization, timeline=timeline), metrics=metrics, environment=environment,
                               gpu_unavailable_reason=NO_NVML_REASON)


@pytest.fixture(scope="session")
def clip_comparison():
    """The seed's comparison on one short clip (one chunk), for tests of figures and reports,
    as recorded without a GPU (see :func:`cpu_only`); tests of GPU panels add a synthetic one."""
    import dataclasses

    comparison = wk.compare(wk.sample_path("aesop_03"), progress=False)
    return dataclasses.replace(comparison, before=cpu_only(comparison.before), after=cpu_only(comparison.after),
                               before_runs=[cpu_only(r) for r in comparison.before_runs],
                               after_runs=[cpu_only(r) for r in comparison.after_runs])


@pytest.fixture(scope="session")
def clip_sweep():
    """Batch sizes 1 and 4 on one short clip, for tests of figures and reports (without a GPU)."""
    import dataclasses

    sweep = wk.sweep(wk.sample_path("aesop_03"), batch_sizes=[1, 4], progress=False)
    points = [dataclasses.replace(p, peak_gpu_mem_mb=None, mean_gpu_util_percent=None) for p in sweep.points]
    return dataclasses.replace(sweep, runs=[cpu_only(r) for r in sweep.runs], points=points)


@pytest.fixture
def shared_tmp():
    """A folder any user can enter (pytest's own are root's alone), removed afterwards: for the
    tests that run a step as an unprivileged user."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="whisperkit-test-")
    os.chmod(folder, 0o755)
    yield folder
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(folder)
