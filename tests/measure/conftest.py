"""Fixtures of the measure tests: a fake pynvml with two GPUs (test_sampler.py, test_nvml.py), and
the check, after every test here, that it left NVML shut down."""

from __future__ import annotations

import pytest

from whisperkit.measure import nvml

try:
    from tests import fake_pynvml
except ImportError:
    import fake_pynvml


@pytest.fixture(autouse=True)
def nvml_released():
    """Every test here must leave NVML shut down (the reference count back at zero)."""
    yield
    assert nvml._users == 0


@pytest.fixture
def two_gpus(monkeypatch):
    """A100 with a watched-process sample; RTX 3090 without power readings."""
    return fake_pynvml.install(monkeypatch, [fake_pynvml.a100(), fake_pynvml.rtx3090(power_supported=False)])
