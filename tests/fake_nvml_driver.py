"""The fake driver behind ``tests/fake_pynvml.py``: its generations (:data:`DRIVERS`: which symbols
it exports, the struct its process lists write) and the calls that go through C structs, the
process lists and GPM, with nvidia-ml-py's own structs. :func:`fake_pynvml.make_fake` adds them."""

from __future__ import annotations

import ctypes
import time

import pynvml as real

#: seconds the fake driver keeps per-process samples after they were taken
BUFFER_S = 5.0


class DriverProcessInfoV3(ctypes.Structure):
    """The 5-field entry the R535/R545 drivers' ``nvmlDeviceGetComputeRunningProcesses_v3`` writes."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong), ("gpuInstanceId", ctypes.c_uint),
                ("computeInstanceId", ctypes.c_uint), ("usedGpuCcProtectedMemory", ctypes.c_ulonglong)]


class DriverProcessInfoV1(ctypes.Structure):
    """The 2-field entry of the unversioned ``nvmlDeviceGetComputeRunningProcesses``."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


_PROCESS_LIST = "nvmlDeviceGetComputeRunningProcesses"
_OTHER_SYMBOLS = {"nvmlDeviceGetConfComputeMemSizeInfo", "nvmlDeviceGetRunningProcessDetailList",
                  "nvmlDeviceGetMemoryInfo_v2", "nvmlGpmMetricsGet"}
#: driver generation -> (the symbols it exports besides the process lists, process-list symbol -> the struct it writes)
DRIVERS = {
    # R550 and newer: _v3 writes the 4-field struct; the detail list carries the CC-protected memory
    "current": (_OTHER_SYMBOLS, {_PROCESS_LIST + "_v3": real.c_nvmlProcessInfo_v2_t,
                                 _PROCESS_LIST + "_v2": real.c_nvmlProcessInfo_v2_t,
                                 _PROCESS_LIST: DriverProcessInfoV1}),
    # R535/R545: _v3 writes 5 fields; no detail list yet (nvitop issue #75)
    "r535": (_OTHER_SYMBOLS - {"nvmlDeviceGetRunningProcessDetailList"},
             {_PROCESS_LIST + "_v3": DriverProcessInfoV3, _PROCESS_LIST + "_v2": real.c_nvmlProcessInfo_v2_t,
              _PROCESS_LIST: DriverProcessInfoV1}),
    # an older driver: no _v3, no memory v2, no GPM
    "old": (set(), {_PROCESS_LIST + "_v2": real.c_nvmlProcessInfo_v2_t, _PROCESS_LIST: DriverProcessInfoV1}),
}


def add_process_utilization(state, device, read_readings, index_of) -> None:
    """``nvmlDeviceGetProcessUtilization`` over the driver's per-process sample buffer."""

    @device("nvmlDeviceGetProcessUtilization")
    def _process_util(gpu, last_seen_us):
        """The driver's buffer of per-process samples: one per sample period and running process
        (a process's samples lag the period boundaries by its offset), kept for BUFFER_S after the
        process stops; those newer than ``last_seen_us`` are returned, NotFound when none is."""
        read_readings(gpu)
        period_us = int(state.sample_period_s * 1e6)
        now_us = time.time_ns() // 1000
        index = index_of(state, gpu)
        buffer = state.process_samples.setdefault(index, [])
        newest_stamps = state.process_newest_stamp.setdefault(index, {})
        for pid in set(newest_stamps) - set(gpu.process_sm_util):
            del newest_stamps[pid]  # stopped: its samples stay in the buffer, no new ones
        for pid, values in gpu.process_sm_util.items():
            offset_us = int(gpu.process_sample_offset_s.get(pid, 0.0) * 1e6)
            stamp = (now_us - offset_us) // period_us * period_us + offset_us
            history = values if isinstance(values, list) else [values]
            if pid not in newest_stamps:  # first seen: its history, each sample one period older
                buffer.extend((pid, stamp - age * period_us, sm) for age, sm in enumerate(reversed(history)))
            else:
                first = max(newest_stamps[pid] + period_us, stamp - int(BUFFER_S * 1e6))
                buffer.extend((pid, at, history[-1]) for at in range(first, stamp + 1, period_us))
            newest_stamps[pid] = stamp
        buffer[:] = [entry for entry in buffer if entry[1] > now_us - int(BUFFER_S * 1e6)]
        samples = [real.c_nvmlProcessUtilizationSample_t(pid=pid, timeStamp=at, smUtil=sm, memUtil=sm // 2,
                                                         encUtil=0, decUtil=0)
                   for pid, at, sm in buffer if at > last_seen_us]
        if not samples:
            raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)
        return samples  # NVML gives no order; oldest first here, so the newest must be chosen


def add_process_lists(fake, state, symbols: set[str], process_structs: dict, device, read_readings) -> None:
    """The driver's process-list C functions, ``_nvmlGetFunctionPointer`` finding this driver's
    symbols, and nvidia-ml-py 13's ``nvmlDeviceGetComputeRunningProcesses`` on top of them."""

    def driver_process_list(symbol, struct):
        """The driver's C function: fills ``entries`` with ``struct``s, whatever the caller's struct is."""
        @device(symbol, export=False)
        def list_processes(gpu, count_ref, entries):
            read_readings(gpu)
            pids = gpu.compute_pids if gpu.compute_pids is not None else list(gpu.process_sm_util)
            count = count_ref._obj  # ctypes.byref(c_uint)
            if entries is None or count.value < len(pids):
                count.value = len(pids)
                return real.NVML_SUCCESS if not pids else real.NVML_ERROR_INSUFFICIENT_SIZE
            written = (struct * len(pids))(*[_process_entry(struct, pid) for pid in pids])
            ctypes.memmove(entries, written, min(ctypes.sizeof(written), ctypes.sizeof(entries)))
            count.value = len(pids)
            return real.NVML_SUCCESS

        def as_c_function(handle, count_ref, entries):
            try:
                return list_processes(handle, count_ref, entries)
            except real.NVMLError as error:  # a C function returns its error code
                return error.value
        return as_c_function

    c_functions = {symbol: driver_process_list(symbol, struct) for symbol, struct in process_structs.items()}

    def _function_pointer(symbol):
        if not state.initialized:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
        if symbol in c_functions:
            return c_functions[symbol]
        if symbol in symbols:
            return lambda *args: real.NVML_ERROR_NOT_SUPPORTED  # exported; whisperkit only looks it up
        raise real.NVMLError(real.NVML_ERROR_FUNCTION_NOT_FOUND)

    fake._nvmlGetFunctionPointer = _function_pointer

    def _compute_processes(handle):
        """As nvidia-ml-py 13: ``_v3`` with its 4-field struct; NVMLLibraryMismatchError without ``_v3``."""
        try:
            function = _function_pointer(_PROCESS_LIST + "_v3")
        except real.NVMLError_FunctionNotFound:
            raise real.NVMLLibraryMismatchError("Unversioned function called and the pyNVML version does not "
                                                "match the NVML lib version.") from None
        count = ctypes.c_uint(0)
        result = function(handle, ctypes.byref(count), None)
        if result == real.NVML_SUCCESS:
            return []
        if result != real.NVML_ERROR_INSUFFICIENT_SIZE:
            raise real.NVMLError(result)
        count.value = count.value * 2 + 5
        entries = (real.c_nvmlProcessInfo_v3_t * count.value)()
        result = function(handle, ctypes.byref(count), entries)
        if result != real.NVML_SUCCESS:
            raise real.NVMLError(result)
        return [real.nvmlStructToFriendlyObject(entries[i]) for i in range(count.value)]

    fake.nvmlDeviceGetComputeRunningProcesses = _compute_processes


def add_gpm(fake, state, symbols: set[str], system, device, read_readings, index_of) -> None:
    """The GPM calls, with nvidia-ml-py's structs: samples are tracked by address, so a metrics
    request whose samples were not both taken, on one device, in order, is refused as NVML does."""

    def gpm_gpu(gpu):
        if "nvmlGpmMetricsGet" not in symbols:
            raise real.NVMLError(real.NVML_ERROR_FUNCTION_NOT_FOUND)
        return gpu.gpm

    @device("nvmlGpmQueryDeviceSupport")
    def _support(gpu):
        support = real.c_nvmlGpmSupport_t()
        support.version = real.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = 0 if gpm_gpu(gpu) is None else 1
        return support

    buffers: dict[int, ctypes.Array] = {}

    @system("nvmlGpmSampleAlloc")
    def _alloc():
        if "nvmlGpmMetricsGet" not in symbols:
            raise real.NVMLError(real.NVML_ERROR_FUNCTION_NOT_FOUND)
        buffer = ctypes.create_string_buffer(64)
        buffers[ctypes.addressof(buffer)] = buffer
        state.gpm_samples[ctypes.addressof(buffer)] = None
        return ctypes.cast(buffer, real.c_nvmlGpmSample_t)

    @system("nvmlGpmSampleFree")
    def _free(sample):
        address = _address(sample)
        if address not in state.gpm_samples:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        del state.gpm_samples[address]
        buffers.pop(address, None)

    def take(gpu, sample, index, instance):
        address = _address(sample)
        if address not in state.gpm_samples or gpm_gpu(gpu) is None:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED if gpu.gpm is None else real.NVML_ERROR_INVALID_ARGUMENT)
        state.gpm_samples[address] = (index, instance, time.monotonic())
        return sample

    @device("nvmlGpmSampleGet")
    def _sample_get(gpu, sample):
        return take(gpu, sample, index_of(state, gpu), None)

    @device("nvmlGpmMigSampleGet")
    def _mig_sample_get(gpu, instance, sample):
        if not any(mig.gpu_instance_id == instance for mig in gpu.mig):
            raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)
        return take(gpu, sample, index_of(state, gpu), instance)

    @system("nvmlGpmMetricsGet")
    def _metrics_get(request):
        first, second = (state.gpm_samples.get(_address(s)) for s in (request.sample1, request.sample2))
        if request.version != real.NVML_GPM_METRICS_GET_VERSION or first is None or second is None \
                or first[:2] != second[:2] or not first[2] < second[2]:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        index, instance, _ = second
        gpu = state.gpus[index]
        read_readings(gpu)
        readings = gpu.gpm if instance is None else next(m.gpm for m in gpu.mig if m.gpu_instance_id == instance)
        for i in range(request.numMetrics):
            metric = request.metrics[i]
            value = (readings or {}).get(metric.metricId)
            metric.nvmlReturn = real.NVML_SUCCESS if value is not None else real.NVML_ERROR_NOT_SUPPORTED
            metric.value = value if value is not None else 0.0
        return request


def _address(sample) -> int | None:
    """The address a ``c_nvmlGpmSample_t`` points to (None for a NULL one)."""
    return ctypes.cast(sample, ctypes.c_void_p).value


def _process_entry(struct, pid: int):
    """One process-list entry as the driver writes it (512 MiB used, no MIG)."""
    values = {"pid": pid, "usedGpuMemory": 512 * 2**20}
    names = [name for name, _ in struct._fields_]
    if "gpuInstanceId" in names:
        values.update(gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
    if "usedGpuCcProtectedMemory" in names:
        values["usedGpuCcProtectedMemory"] = 0
    return struct(**values)


