"""Which NVML device runs the model: CUDA's device numbering mapped to NVML's.

CUDA numbers the devices a process may use after ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-``
UUIDs or ``MIG-`` UUIDs; CUDA stops at the first entry it cannot read), fastest first unless
``CUDA_DEVICE_ORDER=PCI_BUS_ID``. NVML numbers every GPU in PCI order and ignores both. So the
model's ``device_index`` (CUDA's) is matched to NVML here:

1. the ``CUDA_VISIBLE_DEVICES`` entries are resolved against NVML's GPUs and MIG instances
   (an index counts in PCI order; a UUID or a unique prefix of one names its device);
2. where the CUDA driver library answers (``libcuda.so.1``: ``cuDeviceGetPCIBusId``), the PCI
   bus id of CUDA's device is the decisive match for a whole GPU, whatever the device order;
3. otherwise, on a machine whose GPUs differ and without ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, the
   match assumes PCI order and says so in ``how``.

On a MIG instance the memory is the instance's, not the whole card's.

>>> gpu = model_gpu(0)                 # doctest: +SKIP
>>> gpu.nvml_index, gpu.memory_free_mb, gpu.how   # doctest: +SKIP
(1, 9731.0, 'CUDA_VISIBLE_DEVICES=1 -> NVML GPU 1 (PCI bus id)')
"""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from whisperkit.measure.gpu_memory import MIB
from whisperkit.measure.nvml import NvmlSession, _text

NaN = math.nan


@dataclass(frozen=True)
class ModelGpu:
    """The NVML device behind CUDA device ``cuda_index``; ``nvml_index`` is None where it cannot be told
    (``how`` says why). ``mig_uuid`` is set on a MIG instance, whose memory the sizes are (MiB)."""

    cuda_index: int
    nvml_index: int | None
    how: str
    name: str | None = None
    uuid: str | None = None
    mig_uuid: str | None = None
    memory_total_mb: float = NaN
    memory_free_mb: float = NaN

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Target:
    """One device CUDA may enumerate: a whole GPU, or one MIG instance of it."""

    nvml_index: int
    handle: object
    uuid: str | None
    name: str | None
    bus_id: str | None
    mig_uuid: str | None = None
    mig_handle: object = None


def visible_entries(value: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list of entries (None: unset, every device visible)."""
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def model_gpu(cuda_index: int = 0, environ: Mapping[str, str] | None = None) -> ModelGpu:
    """The NVML device (or MIG instance) that CUDA device ``cuda_index`` is, with its memory."""
    environ = os.environ if environ is None else environ
    with NvmlSession() as nv:
        if not nv.available:
            return ModelGpu(cuda_index, None, f"no NVML device ({nv.reason})")
        target, how = model_target(nv, cuda_index, environ)
        if target is None:
            return ModelGpu(cuda_index, None, how)
        memory = nv.query("nvmlDeviceGetMemoryInfo", target.mig_handle or target.handle, device=target.nvml_index,
                          default=None)
        return ModelGpu(
            cuda_index, target.nvml_index, how, target.name, target.uuid, target.mig_uuid,
            memory.total / MIB if memory is not None else NaN,
            memory.free / MIB if memory is not None else NaN,
        )


def model_target(nv: NvmlSession, cuda_index: int, environ: Mapping[str, str]) -> tuple[_Target | None, str]:
    """The GPU or MIG instance of ``nv`` that CUDA device ``cuda_index`` is (None where there is
    none), and how it was found. The sampler uses it to read the model's MIG instance."""
    targets = _targets(nv)
    entries = visible_entries(environ.get("CUDA_VISIBLE_DEVICES"))
    visible, how = _visible(targets, entries)
    if cuda_index >= len(visible):
        return None, f"CUDA device {cuda_index} is not among the {len(visible)} visible ({how})"
    target = visible[cuda_index]
    if target.mig_uuid is not None:  # a MIG instance is named by its UUID: no bus id to check
        return target, how
    bus_id = _cuda_pci_bus_id(cuda_index)
    if bus_id is not None:
        by_bus = [t for t in targets if t.bus_id == bus_id and t.mig_uuid is None]
        if by_bus:
            target, how = by_bus[0], f"{how}; PCI bus id {bus_id}"
    elif entries is None or all(entry.isdigit() for entry in entries):
        names = {t.name for t in targets}
        if len(names) > 1 and environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            how += "; assumes PCI order (set CUDA_DEVICE_ORDER=PCI_BUS_ID to be sure)"
    return target, how


def _targets(nv: NvmlSession) -> list[_Target]:
    """NVML's GPUs in PCI order, a MIG-enabled one replaced by its MIG instances."""
    targets = []
    for device in nv.devices:
        if device.handle is None:
            continue
        h, i = device.handle, device.index
        pci = nv.query("nvmlDeviceGetPciInfo", h, device=i, default=None)
        gpu = _Target(i, h, _text(nv.query("nvmlDeviceGetUUID", h, device=i, default=None)),
                      _text(nv.query("nvmlDeviceGetName", h, device=i, default=None)),
                      normal_bus_id(_text(pci.busId)) if pci is not None else None)
        instances = _mig_instances(nv, gpu)
        targets.extend(instances or [gpu])
    return targets


def _mig_instances(nv: NvmlSession, gpu: _Target) -> list[_Target]:
    index = gpu.nvml_index
    mode = nv.query("nvmlDeviceGetMigMode", gpu.handle, device=index, default=None)
    if not mode or not mode[0]:
        return []
    instances = []
    count = nv.query("nvmlDeviceGetMaxMigDeviceCount", gpu.handle, device=index, default=0)
    for i in range(int(count)):
        handle = nv.query("nvmlDeviceGetMigDeviceHandleByIndex", gpu.handle, i, device=index, default=None,
                          not_found=False)
        if not handle:
            continue
        uuid = _text(nv.query("nvmlDeviceGetUUID", handle, device=index, default=None))
        instances.append(_Target(gpu.nvml_index, gpu.handle, gpu.uuid, gpu.name, gpu.bus_id, uuid, handle))
    return instances


def _visible(targets: list[_Target], entries: list[str] | None) -> tuple[list[_Target], str]:
    """The targets CUDA enumerates, in its order, and how they were found."""
    if entries is None:
        return targets, "CUDA_VISIBLE_DEVICES unset"
    whole = _whole_gpus(targets)
    visible: list[_Target] = []
    for entry in entries:
        found = _resolve(entry, targets, whole)
        if found is None:  # CUDA ignores this entry and every one after it
            break
        if found not in visible:
            visible.append(found)
    return visible, f"CUDA_VISIBLE_DEVICES={','.join(entries)}"


def _whole_gpus(targets: list[_Target]) -> list[_Target]:
    """One target per physical GPU (a MIG GPU by its first instance), in PCI order."""
    seen: dict[int, _Target] = {}
    for target in targets:
        seen.setdefault(target.nvml_index, target)
    return list(seen.values())


def _resolve(entry: str, targets: list[_Target], whole: list[_Target]) -> _Target | None:
    if entry.lstrip("-").isdigit():
        index = int(entry)
        return whole[index] if 0 <= index < len(whole) else None
    if entry.startswith("MIG-GPU-"):  # the old form MIG-GPU-<uuid>/<gi>/<ci>: its GPU's first instance
        parent = entry[len("MIG-"):].split("/")[0]
        return next((t for t in targets if t.mig_uuid and t.uuid == parent), None)
    if entry.startswith("MIG-"):
        matches = [t for t in targets if t.mig_uuid and t.mig_uuid.startswith(entry)]
    else:
        prefix = entry if entry.startswith("GPU-") else f"GPU-{entry}"
        matches = [t for t in whole if t.uuid and t.uuid.startswith(prefix)]
    return matches[0] if len(matches) == 1 else None


def normal_bus_id(bus_id: str | None) -> str | None:
    """A PCI bus id as ``dddd:bb:dd.f`` in lower case (NVML pads the domain to 8 digits, CUDA to 4)."""
    if not bus_id:
        return None
    try:
        domain, bus, rest = bus_id.strip().lower().split(":")
        device, function = rest.split(".")
        return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{int(function, 16)}"
    except ValueError:
        return None


def _cuda_pci_bus_id(cuda_index: int) -> str | None:
    """The PCI bus id of CUDA device ``cuda_index`` from the CUDA driver library, or None."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device = ctypes.c_int()
    buffer = ctypes.create_string_buffer(32)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), cuda_index) != 0:
        return None
    if cuda.cuDeviceGetPCIBusId(buffer, len(buffer), device) != 0:
        return None
    return normal_bus_id(buffer.value.decode("ascii", errors="replace"))
