"""GPU Performance Monitoring (GPM): how much of a Hopper-or-newer GPU was busy, not only whether.

NVML's ``util_percent`` is the share of time some kernel ran: one small kernel on one SM reads
100 %. GPM counters (``nvmlGpmMetricsGet``; Hopper and newer: H100, H200, B200, with a driver
that has the GPM functions) measure the GPU itself between two samples (``nvmlGpmSampleGet``);
they use their own hardware, not the profiler's, so DCGM or Nsight running beside them does not
block them. Each read here takes a new sample and computes, over the time since the previous
one (NVML's definitions, 0-100):

- ``sm_active_percent``: ``NVML_GPM_METRIC_SM_UTIL``, the percentage of SMs that were busy;
- ``sm_occupancy_percent``: ``NVML_GPM_METRIC_SM_OCCUPANCY``, active warps against the maximum;
- ``tensor_active_percent``: ``NVML_GPM_METRIC_ANY_TENSOR_UTIL``, time the SMs ran tensor-core work;
- ``dram_bw_percent``: ``NVML_GPM_METRIC_DRAM_BW_UTIL``, DRAM bandwidth used against the maximum.

The first read only takes the first sample (NaN, as the CPU columns' first sample). Where GPM
is unavailable (an older GPU: ``nvmlGpmQueryDeviceSupport`` says so; an older driver: the
function is missing) the columns are NaN and marked once with the reason. On a GPU in MIG mode
the model's MIG instance is sampled (``nvmlGpmMigSampleGet`` with its GPU instance id).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

from whisperkit.measure.columns import GPM_METRICS

NaN = math.nan
#: column suffix (:data:`whisperkit.measure.columns.GPM_METRICS`) -> the NVML GPM metric it holds
GPM_METRIC_IDS = dict(zip(GPM_METRICS, ("NVML_GPM_METRIC_SM_UTIL", "NVML_GPM_METRIC_SM_OCCUPANCY",
                                        "NVML_GPM_METRIC_ANY_TENSOR_UTIL", "NVML_GPM_METRIC_DRAM_BW_UTIL")))
#: after this many failed samples in a row GPM is not asked again (on a vGPU guest every sample fails)
MAX_FAILURES_IN_A_ROW = 3
NOT_SUPPORTED_REASON = "GPM not supported on this GPU (NVML's GPM counters need a Hopper or newer GPU)"


class GpmReader:
    """GPM metrics of one device between consecutive reads; :meth:`close` frees its samples.

    ``query`` is :meth:`whisperkit.measure.nvml.NvmlSession.query`, ``mark(columns, reason)`` marks
    columns unavailable with a reason, ``prefix`` is the device's column prefix (``gpu0_``) and
    ``gpu_instance_id`` the MIG instance to sample (None: the whole GPU); with ``skip_reason`` nothing
    is sampled and the columns are marked with it.
    """

    def __init__(self, nv: ModuleType, query: Callable[..., Any], mark: Callable[[list[str], str], None],
                 index: int, handle: object, prefix: str, gpu_instance_id: int | None = None,
                 skip_reason: str | None = None) -> None:
        self._nv, self._query, self._mark = nv, query, mark
        self._index, self._handle, self._gi = index, handle, gpu_instance_id
        self.columns = {prefix + suffix: suffix for suffix in GPM_METRIC_IDS}
        self._samples: list[object] = []
        self._previous: object | None = None
        self._request: Any = None
        self._failures = 0  # failed samples in a row
        if skip_reason is not None:
            self._mark(list(self.columns), skip_reason)
        self.enabled = skip_reason is None and self._start()

    def _start(self) -> bool:
        nv, columns = self._nv, list(self.columns)
        ids = [getattr(nv, name, None) for name in GPM_METRIC_IDS.values()]
        if None in ids or not hasattr(nv, "c_nvmlGpmMetricsGet_t"):
            self._mark(columns, "GPM not in this nvidia-ml-py (upgrade nvidia-ml-py)")
            return False
        support = self._query("nvmlGpmQueryDeviceSupport", self._handle, device=self._index, default=None,
                              columns=columns)
        if support is None:  # unsupported or failed: the query has said why
            return False
        if not support.isSupportedDevice:
            self._mark(columns, NOT_SUPPORTED_REASON)
            return False
        for _ in range(2):
            sample = self._query("nvmlGpmSampleAlloc", device=self._index, default=None, columns=columns)
            if sample is None:
                self.close()
                return False
            self._samples.append(sample)
        request = nv.c_nvmlGpmMetricsGet_t()
        request.version = nv.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(ids)
        for i, metric_id in enumerate(ids):
            request.metrics[i].metricId = metric_id
        self._request = request
        return True

    def read(self) -> dict[str, float]:
        """The metrics since the previous read, percent (NaN on the first read and where unknown)."""
        values = dict.fromkeys(self.columns, NaN)
        if not self.enabled:
            return values
        sample = self._samples[0] if self._previous is not self._samples[0] else self._samples[1]
        if self._gi is None:
            taken = self._query("nvmlGpmSampleGet", self._handle, sample, device=self._index, default=None,
                                columns=list(self.columns))
        else:
            taken = self._query("nvmlGpmMigSampleGet", self._handle, self._gi, sample, device=self._index,
                                default=None, columns=list(self.columns))
        if taken is None:
            self._previous = None
            self._failed()
            return values
        previous, self._previous = self._previous, sample
        if previous is None:
            return values
        request = self._request
        request.sample1, request.sample2 = previous, sample
        if self._query("nvmlGpmMetricsGet", request, device=self._index, default=None,
                       columns=list(self.columns)) is None:
            self._failed()
            return values
        self._failures = 0
        for i, column in enumerate(self.columns):
            metric = request.metrics[i]
            if metric.nvmlReturn == 0:
                values[column] = float(metric.value)
            elif metric.nvmlReturn == getattr(self._nv, "NVML_ERROR_NOT_SUPPORTED", 3):
                self._mark([column], "this GPM metric is not supported on this GPU")
        return values

    def _failed(self) -> None:
        self._failures += 1
        if self.enabled and self._failures >= MAX_FAILURES_IN_A_ROW:
            self._mark(list(self.columns), f"GPM samples failed {self._failures} times in a row: not asked again "
                                           "(GPM cannot sample on a vGPU guest, for one)")
            self.close()

    def close(self) -> None:
        """Free the GPM samples (idempotent)."""
        samples, self._samples, self.enabled = self._samples, [], False
        for sample in samples:
            self._query("nvmlGpmSampleFree", sample, device=self._index, default=None)
