"""A fake ``pynvml`` with exactly the functions whisperkit calls, for machines without a GPU.

It reuses nvidia-ml-py's real error classes, constants and ctypes result structures, returns
values in NVML's units (bytes, milliwatts, MHz, °C, microsecond timestamps) and raises errors
the way the real module does (``NVMLError(code)`` becomes the matching subclass).

The driver behind it is one of :data:`DRIVERS` (``make_fake(driver=...)``): which symbols
``_nvmlGetFunctionPointer`` finds, and the struct its ``nvmlDeviceGetComputeRunningProcesses_v3``
writes. ``nvmlDeviceGetComputeRunningProcesses`` behaves as nvidia-ml-py 13's: it calls ``_v3``
with a 4-field struct (so on ``"r535"``, whose ``_v3`` writes 5 fields, PIDs after the first are
garbage) and raises ``NVMLLibraryMismatchError`` on a driver without ``_v3`` (``"old"``).
Memory answers v1 (``used`` = allocations + the driver's reservation) and v2 (``reserved``
apart); GPM answers with nvidia-ml-py's own structs on a GPU given ``gpm`` readings.

>>> fake = make_fake([a100(), rtx3090(power_supported=False)])      # doctest: +SKIP
>>> monkeypatch.setitem(sys.modules, "pynvml", fake)      # doctest: +SKIP
>>> fake.state.calls[("nvmlDeviceGetPowerUsage", 1)]      # doctest: +SKIP   how often it was asked

The sampler reads NVML in its own process: :func:`install` puts the fake in this process and,
through ``WHISPERKIT_PYNVML``, an equal fake (same GPUs, its own call counts) in the processes this
one starts. Changes made to a fake after a Sampler started do not reach the sampler's copy.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
from collections import Counter
from dataclasses import asdict, dataclass, field

import pynvml as real

try:
    from tests import fake_nvml_driver
    from tests.fake_nvml_driver import DRIVERS
except ImportError:  # run from inside tests/
    import fake_nvml_driver  # type: ignore[no-redef]
    from fake_nvml_driver import DRIVERS  # type: ignore[no-redef]

GIB = 2**30


@dataclass
class FakeMig:
    """One MIG instance: its UUID, its own memory and GPU instance id (NVML answers only these for a MIG handle)."""

    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    gpu_instance_id: int = 1
    #: GPM readings of this instance (see FakeGpu.gpm), read with nvmlGpmMigSampleGet
    gpm: dict[int, float] | None = None


@dataclass
class FakeGpu:
    """One device's readings, in NVML's units, and the failures it should show."""

    name: str
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    util_gpu_percent: int
    util_memory_percent: int
    power_mw: int
    sm_clock_mhz: int
    temperature_c: int
    power_supported: bool = True
    #: after this many NVML calls on this device, every call raises NVMLError_GpuIsLost
    lost_after_calls: int | None = None
    #: pid -> smUtil reported by nvmlDeviceGetProcessUtilization (empty: NotFound); a list is
    #: that process's samples, oldest first, one driver period apart (each with its own timestamp)
    process_sm_util: dict[int, int | list[int]] = field(default_factory=dict)
    #: pids nvmlDeviceGetComputeRunningProcesses lists (None: the keys of process_sm_util)
    compute_pids: list[int] | None = None
    pci_bus_id: str = "00000000:07:00.0"
    #: MIG instances; when there are any, MIG mode is on and the parent's utilization is NotSupported
    mig: list[FakeMig] = field(default_factory=list)
    mig_capable: bool = True
    #: nvmlDeviceGetTotalEnergyConsumption: millijoules at creation (None: NotSupported, pre-Volta)
    energy_start_mj: int | None = 5_000_000
    created_s: float = field(default_factory=time.monotonic)
    calls_made: int = 0
    #: a JSON file ``{"util_gpu_percent": 85, "process_sm_util": {"<pid>": 0}}`` read at every
    #: utilization call when set, so a test can change the readings of a fake that runs in the
    #: sampler's own process (see :func:`set_readings`)
    readings_file: str | None = None
    #: bytes the driver reserves for itself: v1's ``used`` includes them, v2 reports them as ``reserved``
    memory_reserved_bytes: int = 0
    #: on a GPU in MIG mode, whether the parent's memory may be read (else NVMLError_NoPermission)
    mig_parent_memory_permitted: bool = False
    #: GPM readings, NVML_GPM_METRIC_* id -> value between two samples (None: not a GPM GPU, before Hopper)
    gpm: dict[int, float] | None = None
    #: pid -> seconds by which that process's per-process samples lag the driver's period boundaries
    process_sample_offset_s: dict[int, float] = field(default_factory=dict)


def set_readings(gpu: FakeGpu, util_gpu_percent: int, process_sm_util: dict[int, int],
                 gpm: dict[int, float] | None = None) -> None:
    """Change what ``gpu`` reads from now on, in every process: needs ``gpu.readings_file``.
    ``gpm`` (a GPM GPU's readings) is kept as it was when not given."""
    gpu.util_gpu_percent, gpu.process_sm_util = util_gpu_percent, dict(process_sm_util)
    if gpm is not None:
        gpu.gpm = dict(gpm)
    with open(f"{gpu.readings_file}.tmp", "w", encoding="utf-8") as handle:
        json.dump({"util_gpu_percent": util_gpu_percent,
                   "process_sm_util": {str(pid): sm for pid, sm in process_sm_util.items()},
                   "gpm": None if gpu.gpm is None else {str(k): v for k, v in gpu.gpm.items()}}, handle)
    os.replace(f"{gpu.readings_file}.tmp", gpu.readings_file)


def _read_readings(gpu: FakeGpu) -> None:
    """Take ``gpu.readings_file``'s values, when there is one."""
    if gpu.readings_file is None or not os.path.exists(gpu.readings_file):
        return
    with open(gpu.readings_file, encoding="utf-8") as handle:
        values = json.load(handle)
    gpu.util_gpu_percent = values["util_gpu_percent"]
    gpu.process_sm_util = {int(pid): sm for pid, sm in values["process_sm_util"].items()}
    if values.get("gpm") is not None:
        gpu.gpm = {int(k): v for k, v in values["gpm"].items()}


def a100(**changes) -> FakeGpu:
    """An idle-ish NVIDIA A100-SXM4-40GB."""
    values = dict(
        name="NVIDIA A100-SXM4-40GB", uuid="GPU-5f2d7c1e-8a4b-4b1e-9c55-0d6a2e7f3a10",
        memory_total_bytes=40 * GIB, memory_used_bytes=4 * GIB + 512 * 2**20,
        util_gpu_percent=87, util_memory_percent=41, power_mw=251_500, sm_clock_mhz=1410,
        temperature_c=54,
    )
    return FakeGpu(**{**values, **changes})


def rtx3090(**changes) -> FakeGpu:
    """A busy NVIDIA GeForce RTX 3090."""
    values = dict(
        name="NVIDIA GeForce RTX 3090", uuid="GPU-1b9e0c44-27d3-6f0a-b8e2-77c1d5a90e42",
        memory_total_bytes=24 * GIB, memory_used_bytes=10 * GIB,
        util_gpu_percent=99, util_memory_percent=63, power_mw=348_250, sm_clock_mhz=1695,
        temperature_c=71, pci_bus_id="00000000:65:00.0", mig_capable=False,
    )
    return FakeGpu(**{**values, **changes})


def h100_mig(**changes) -> FakeGpu:
    """An NVIDIA H100 80GB in MIG mode with a 1g.10gb and a 3g.40gb instance."""
    values = dict(
        name="NVIDIA H100 80GB HBM3", uuid="GPU-9d1c7a52-3f0e-4c1b-8a2d-5e6f7a8b9c0d",
        memory_total_bytes=80 * GIB, memory_used_bytes=12 * GIB,
        util_gpu_percent=0, util_memory_percent=0, power_mw=180_000, sm_clock_mhz=1980,
        temperature_c=40, pci_bus_id="00000000:1A:00.0",
        mig=[FakeMig("MIG-4a2b6c8d-1e3f-5a7b-9c0d-2e4f6a8b0c1d", 10 * GIB, 1 * GIB, gpu_instance_id=9,
                     gpm=_gpm_readings(sm_active=20.0, occupancy=12.0, tensor=5.0, dram=15.0)),
             FakeMig("MIG-7f8e9d0c-2b1a-4c3d-8e5f-6a7b8c9d0e1f", 40 * GIB, 2 * GIB, gpu_instance_id=2,
                     gpm=_gpm_readings(sm_active=61.0, occupancy=33.0, tensor=27.0, dram=44.0))],
        gpm={},  # a GPM GPU; in MIG mode it is sampled per instance
    )
    return FakeGpu(**{**values, **changes})


def h100(**changes) -> FakeGpu:
    """An NVIDIA H100 80GB HBM3 reading 100 % utilization while GPM shows 35 % of its SMs active;
    the driver reserves 531 MiB (v1's ``used`` counts it, v2's does not)."""
    values = dict(
        name="NVIDIA H100 80GB HBM3", uuid="GPU-3c5e7a9b-1d2f-4a6c-8e0b-2d4f6a8c0e13",
        memory_total_bytes=80 * GIB, memory_used_bytes=6 * GIB, memory_reserved_bytes=531 * 2**20,
        util_gpu_percent=100, util_memory_percent=38, power_mw=402_000, sm_clock_mhz=1980,
        temperature_c=58, pci_bus_id="00000000:19:00.0",
        gpm=_gpm_readings(sm_active=35.0, occupancy=18.0, tensor=9.0, dram=27.0),
    )
    return FakeGpu(**{**values, **changes})


def _gpm_readings(*, sm_active: float, occupancy: float, tensor: float, dram: float) -> dict[int, float]:
    """GPM readings by NVML metric id: SM activity, SM occupancy, any-tensor activity, DRAM bandwidth (percent)."""
    return {real.NVML_GPM_METRIC_SM_UTIL: sm_active, real.NVML_GPM_METRIC_SM_OCCUPANCY: occupancy,
            real.NVML_GPM_METRIC_ANY_TENSOR_UTIL: tensor, real.NVML_GPM_METRIC_DRAM_BW_UTIL: dram}


@dataclass
class FakeState:
    """What the fake saw: init/shutdown counts and calls per (function, device index or None)."""

    gpus: list[FakeGpu]
    init_error: int | None
    driver_version: str
    cuda_version: int
    #: driver sample period for per-process utilization, seconds
    sample_period_s: float
    #: the driver generation, one of DRIVERS
    driver: str = "current"
    initialized: int = 0
    init_calls: int = 0
    shutdown_calls: int = 0
    calls: Counter = field(default_factory=Counter)
    #: GPM samples allocated and not freed: address -> (device index, GPU instance id or None, time taken or None)
    gpm_samples: dict = field(default_factory=dict)
    #: the driver's per-process sample buffer per device: [(pid, timeStamp µs, smUtil)], and each running pid's newest stamp
    process_samples: dict = field(default_factory=dict)
    process_newest_stamp: dict = field(default_factory=dict)


class _Handle:
    """Stands in for the opaque ``c_nvmlDevice_t`` pointer."""

    def __init__(self, index: int, mig: int | None = None) -> None:
        self.index = index
        self.mig = mig

    def __repr__(self) -> str:
        return f"<fake nvmlDevice {self.index}{'' if self.mig is None else f' MIG {self.mig}'}>"


#: what NVML answers for a MIG device handle; everything else is NotSupported there
MIG_HANDLE_FUNCTIONS = {"nvmlDeviceGetUUID", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetGpuInstanceId"}
#: NotSupported on the parent of a GPU in MIG mode
MIG_PARENT_UNSUPPORTED = {"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetProcessUtilization", "nvmlGpmSampleGet"}


def make_fake(gpus: list[FakeGpu] | None = None, *, init_error: int | None = None,
              driver_version: str = "550.54.15", cuda_version: int = 12040,
              sample_period_s: float = 1 / 6, driver: str = "current") -> types.ModuleType:
    """A fresh fake module; ``init_error`` is an ``NVML_ERROR_*`` code nvmlInit raises; ``driver``
    one of :data:`DRIVERS`."""
    if driver not in DRIVERS:
        raise ValueError(f"unknown fake driver {driver!r}; expected one of: {', '.join(DRIVERS)}")
    state = FakeState(list(gpus or []), init_error, driver_version, cuda_version, sample_period_s, driver)
    fake = types.ModuleType("pynvml", "fake pynvml for whisperkit tests")
    for name in dir(real):  # the real error classes, constants and the structs callers build
        if name.startswith(("NVMLError", "NVML_", "nvmlMemory_v", "c_nvmlGpm")) or name == "NVMLLibraryMismatchError":
            setattr(fake, name, getattr(real, name))
    fake.state = state
    symbols, process_structs = DRIVERS[driver]

    def system(name):
        def wrap(func):
            def call(*args):
                state.calls[(name, None)] += 1
                if name != "nvmlInit" and not state.initialized:
                    raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
                return func(*args)
            call.__name__ = name
            setattr(fake, name, call)
            return call
        return wrap

    def device(name, export=True):
        def wrap(func):
            def call(handle, *args):
                if not state.initialized:
                    raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
                gpu = state.gpus[handle.index]
                state.calls[(name, handle.index)] += 1
                gpu.calls_made += 1
                if gpu.lost_after_calls is not None and gpu.calls_made > gpu.lost_after_calls:
                    raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)
                if handle.mig is not None:
                    if name not in MIG_HANDLE_FUNCTIONS:
                        raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
                    return func(_mig_view(gpu, gpu.mig[handle.mig]), *args)
                if gpu.mig and name in MIG_PARENT_UNSUPPORTED:
                    raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
                return func(gpu, *args)
            call.__name__ = name
            if export:
                setattr(fake, name, call)
            return call
        return wrap

    @system("nvmlInit")
    def _init():
        state.init_calls += 1
        if state.init_error is not None:
            raise real.NVMLError(state.init_error)
        state.initialized += 1

    @system("nvmlShutdown")
    def _shutdown():
        state.shutdown_calls += 1
        state.initialized -= 1

    @system("nvmlDeviceGetCount")
    def _count():
        return len(state.gpus)

    @system("nvmlDeviceGetHandleByIndex")
    def _handle(index):
        if not 0 <= index < len(state.gpus):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    @system("nvmlSystemGetDriverVersion")
    def _driver():
        return state.driver_version

    @system("nvmlSystemGetCudaDriverVersion")
    def _cuda():
        return state.cuda_version

    @device("nvmlDeviceGetName")
    def _name(gpu):
        return gpu.name

    @device("nvmlDeviceGetUUID")
    def _uuid(gpu):
        return gpu.uuid

    @device("nvmlDeviceGetMemoryInfo")
    def _memory(gpu, version=None):
        if gpu.mig and not gpu.mig_parent_memory_permitted:
            raise real.NVMLError(real.NVML_ERROR_NO_PERMISSION)
        reserved, used = gpu.memory_reserved_bytes, gpu.memory_used_bytes
        free = gpu.memory_total_bytes - used - reserved
        if not version:  # v1: the reservation counts as used
            return real.c_nvmlMemory_t(total=gpu.memory_total_bytes, free=free, used=used + reserved)
        if "nvmlDeviceGetMemoryInfo_v2" not in symbols:
            raise real.NVMLError(real.NVML_ERROR_FUNCTION_NOT_FOUND)
        if version != real.nvmlMemory_v2:
            raise real.NVMLError(real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return real.c_nvmlMemory_v2_t(version=version, total=gpu.memory_total_bytes, reserved=reserved,
                                      free=free, used=used)

    @device("nvmlDeviceGetGpuInstanceId")
    def _gpu_instance_id(gpu):
        if not hasattr(gpu, "gpu_instance_id"):  # a whole GPU, not a MIG instance
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.gpu_instance_id

    @device("nvmlDeviceGetUtilizationRates")
    def _util(gpu):
        _read_readings(gpu)
        return real.c_nvmlUtilization_t(gpu=gpu.util_gpu_percent, memory=gpu.util_memory_percent)

    @device("nvmlDeviceGetPowerUsage")
    def _power(gpu):
        if not gpu.power_supported:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return gpu.power_mw

    @device("nvmlDeviceGetClockInfo")
    def _clock(gpu, clock_type):
        if clock_type != real.NVML_CLOCK_SM:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return gpu.sm_clock_mhz

    @device("nvmlDeviceGetTemperature")
    def _temperature(gpu, sensor):
        if sensor != real.NVML_TEMPERATURE_GPU:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature_c

    @device("nvmlDeviceGetTotalEnergyConsumption")
    def _energy(gpu):
        if gpu.energy_start_mj is None:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return gpu.energy_start_mj + int(gpu.power_mw * (time.monotonic() - gpu.created_s))

    @device("nvmlDeviceGetPciInfo")
    def _pci(gpu):
        bus_id = gpu.pci_bus_id.encode()
        return real.nvmlPciInfo_t(busId=bus_id, busIdLegacy=bus_id[4:])

    @device("nvmlDeviceGetMigMode")
    def _mig_mode(gpu):
        if not gpu.mig_capable:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        mode = 1 if gpu.mig else 0
        return [mode, mode]

    @device("nvmlDeviceGetMaxMigDeviceCount")
    def _mig_count(gpu):
        if not gpu.mig_capable:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return 7 if gpu.mig else 0

    def _mig_handle(handle, index):
        if not state.initialized:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
        gpu = state.gpus[handle.index]
        state.calls[("nvmlDeviceGetMigDeviceHandleByIndex", handle.index)] += 1
        if not gpu.mig_capable:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= index < len(gpu.mig):
            raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)
        return _Handle(handle.index, mig=index)

    fake.nvmlDeviceGetMigDeviceHandleByIndex = _mig_handle
    fake_nvml_driver.add_process_utilization(state, device, _read_readings, _index_of)
    fake_nvml_driver.add_process_lists(fake, state, symbols, process_structs, device, _read_readings)
    fake_nvml_driver.add_gpm(fake, state, symbols, system, device, _read_readings, _index_of)
    return fake


def _index_of(state: FakeState, gpu: FakeGpu) -> int:
    """NVML's index of ``gpu`` (by identity: two GPUs may read alike)."""
    return next(i for i, candidate in enumerate(state.gpus) if candidate is gpu)


def _mig_view(gpu: FakeGpu, mig: FakeMig) -> FakeGpu:
    """What NVML answers for a MIG instance's handle: its own memory, UUID and GPU instance id."""
    view = FakeGpu(gpu.name, mig.uuid, mig.memory_total_bytes, mig.memory_used_bytes, 0, 0, 0, 0, 0,
                   gpm=mig.gpm)
    view.gpu_instance_id = mig.gpu_instance_id  # type: ignore[attr-defined]
    return view


#: the environment variables :func:`install` sets (see whisperkit.measure.nvml)
PYNVML_ENV = "WHISPERKIT_PYNVML"
CONFIG_ENV = "WHISPERKIT_FAKE_PYNVML"
_installed: dict[str, types.ModuleType] = {}


def install(monkeypatch, gpus: list[FakeGpu] | None = None, **options) -> types.ModuleType:
    """Use a fake pynvml here (``sys.modules``) and in every process started from here (the
    sampler's): returns this process's fake. ``options`` are :func:`make_fake`'s keywords."""
    config = json.dumps({"gpus": [_gpu_to_json(gpu) for gpu in gpus or []], **options})
    fake = make_fake(gpus, **options)
    _installed[config] = fake
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv(PYNVML_ENV, f"{__name__}:from_environment")
    monkeypatch.setenv(CONFIG_ENV, config)
    return fake


def install_missing(monkeypatch) -> None:
    """No pynvml module at all, here and in the processes started from here."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    monkeypatch.setenv(PYNVML_ENV, f"{__name__}:missing")


def missing() -> types.ModuleType:
    raise ImportError("No module named 'pynvml'")


def from_environment() -> types.ModuleType:
    """The fake :func:`install` described in ``WHISPERKIT_FAKE_PYNVML`` (one per process)."""
    config = os.environ[CONFIG_ENV]
    if config not in _installed:
        options = json.loads(config)
        gpus = [_gpu_from_json(gpu) for gpu in options.pop("gpus")]
        _installed[config] = make_fake(gpus, **options)
    return _installed[config]


def _gpu_to_json(gpu: FakeGpu) -> dict:
    return asdict(gpu)  # json turns the int keys into strings: _gpu_from_json turns them back


def _int_keys(mapping: dict | None) -> dict | None:
    return None if mapping is None else {int(key): value for key, value in mapping.items()}


def _gpu_from_json(values: dict) -> FakeGpu:
    migs = [FakeMig(**{**mig, "gpm": _int_keys(mig.get("gpm"))}) for mig in values["mig"]]
    values = {**values, "mig": migs, "calls_made": 0, "gpm": _int_keys(values.get("gpm")),
              "process_sm_util": _int_keys(values["process_sm_util"]),
              "process_sample_offset_s": _int_keys(values.get("process_sample_offset_s", {}))}
    return FakeGpu(**values)
