"""The small checks every layer shares exist once, and the places that need them use them."""

from __future__ import annotations

import math

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.checks import is_missing, is_whole
from whisperkit.experiments import runners
from whisperkit.measure.cuda import is_out_of_memory


@pytest.mark.parametrize("value", [True, False, 2.0, "8", None, math.nan])
def test_a_whole_number_is_an_int_and_never_a_bool_or_a_float(value):
    assert not is_whole(value)


def test_whole_numbers_respect_the_minimum():
    assert is_whole(0) and is_whole(np.int64(3), minimum=1) and is_whole(-2)
    assert not is_whole(0, minimum=1) and not is_whole(-1, minimum=0)


@pytest.mark.parametrize("value, missing", [(None, True), (math.nan, True), (np.float32("nan"), True),
                                            (0.0, False), (0, False), (np.int64(0), False), ("n/a", False)])
def test_missing_readings_are_none_or_nan(value, missing):
    assert is_missing(value) is missing


@pytest.mark.parametrize("bad", [True, 2.0, 0, "4"])
def test_every_setting_rejects_what_is_not_a_whole_number(bad):
    with pytest.raises(wk.ConfigError, match="whole number"):
        wk.Config(batch_size=bad)
    with pytest.raises(wk.ConfigError, match="whole number"):
        wk.Config(num_workers=bad)
    with pytest.raises(wk.WhisperkitError, match="whole number"):
        runners.sweep(wk.sample_path(), [1, bad])
    with pytest.raises(wk.WhisperkitError, match="whole number"):
        runners.compare(wk.sample_path(), repeats=bad)


@pytest.mark.parametrize("message", [
    "CUDA failed with error out of memory",
    "cuBLAS failed with status CUBLAS_STATUS_ALLOC_FAILED",
    "cuDNN failed with status CUDNN_STATUS_ALLOC_FAILED",
])
def test_ctranslate2_allocation_failures_read_as_out_of_memory(message):
    assert is_out_of_memory(RuntimeError(message))


def test_other_errors_are_not_out_of_memory():
    assert not is_out_of_memory(RuntimeError("CUDA failed with error invalid device ordinal"))
    assert not is_out_of_memory(ValueError("unsupported compute type float16"))
