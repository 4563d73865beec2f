"""What machine a run happened on: CPU, memory, GPUs and driver, and library versions."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("whisperkit", "faster-whisper", "ctranslate2", "nvidia-ml-py", "onnxruntime", "numpy", "av")


def collect_environment(cuda_index: int | None = None) -> dict:
    """A JSON-ready description of this machine, so runs from different machines can be told apart.

    Keys: ``python``, ``platform``, ``cpu_model``, ``cpu_logical_cores``, ``cpu_physical_cores``,
    ``memory_total_mb`` (MiB), ``gpus`` (per NVIDIA GPU: index, name, uuid, memory_total_mb,
    memory_free_mb, memory_reserved_mb, driver_version, cuda_driver_version, mig_mode, gpm; see
    :func:`whisperkit.measure.nvml.gpu_inventory`), ``gpu_unavailable_reason`` (why
    ``gpus`` is empty, else None), ``ctranslate2_cuda_devices``, ``cuda_libraries`` (the CUDA
    libraries ctranslate2 needs: ``needed``, ``found`` (library -> file), ``missing``; None
    where ctranslate2 sees no CUDA device, so nothing was loaded), ``cuda_unusable_reason`` (why
    ``device="auto"`` runs on the CPU; None where it runs on the GPU), ``model_gpu`` (with
    ``cuda_index``, the CUDA device that ran the model: its NVML ``nvml_index``, name, UUID, MIG
    UUID, memory and ``how`` it was matched, see :mod:`whisperkit.measure.devices`; else None)
    and ``versions``.
    """
    import psutil

    from whisperkit.measure.cuda import cuda_device_count, cuda_libraries, cuda_unusable_reason
    from whisperkit.measure.nvml import gpu_inventory

    gpus, gpu_reason = gpu_inventory()
    cuda_devices = cuda_device_count()
    libraries = cuda_libraries() if cuda_devices > 0 else None
    unusable = cuda_unusable_reason()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_logical_cores": psutil.cpu_count(logical=True),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "memory_total_mb": round(psutil.virtual_memory().total / 2**20),
        "gpus": gpus,
        "gpu_unavailable_reason": gpu_reason,
        "ctranslate2_cuda_devices": cuda_devices,
        "cuda_libraries": libraries.to_dict() if libraries is not None else None,
        "cuda_unusable_reason": unusable,
        "model_gpu": _model_gpu(cuda_index),
        "versions": package_versions(),
    }


def _model_gpu(cuda_index: int | None) -> dict | None:
    if cuda_index is None:
        return None
    from whisperkit.measure.devices import model_gpu

    return model_gpu(cuda_index).to_dict()


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo on Linux, else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict:
    """Installed versions of the packages that decide a run's speed (None where missing)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def format_environment(env: dict) -> str:
    """The environment as the lines ``whisperkit env`` prints."""
    lines = [
        f"CPU: {env['cpu_model']} ({env['cpu_physical_cores']} cores, {env['cpu_logical_cores']} threads)",
        f"Memory: {env['memory_total_mb']} MiB",
    ]
    if env["gpus"]:
        model_gpu = env.get("model_gpu") or {}
        for gpu in env["gpus"]:
            cuda = f" (CUDA device {model_gpu['cuda_index']})" if gpu["index"] == model_gpu.get("nvml_index") else ""
            mig = ", MIG mode" if gpu.get("mig_mode") else ""
            gpm = {True: ", GPM counters", False: ", no GPM counters"}.get(gpu.get("gpm"), "")
            lines.append(
                f"GPU {gpu['index']}{cuda}: {gpu['name']}, {gpu['memory_total_mb']:.0f} MiB "
                f"({gpu['memory_free_mb']:.0f} MiB free), driver {gpu['driver_version']}, "
                f"CUDA {gpu['cuda_driver_version']}{mig}{gpm}"
            )
    else:
        lines.append(f"GPU: none visible ({env['gpu_unavailable_reason']})")
    lines.append(f"CUDA devices ctranslate2 sees: {env['ctranslate2_cuda_devices']}")
    libraries = env.get("cuda_libraries")
    if libraries:
        for name in libraries["needed"]:
            where = libraries["found"].get(name)
            lines.append(f"CUDA library {name}: " + (f"loaded from {where}" if where else
                                                     f"missing ({libraries['errors'].get(name, 'not found')})"))
    reason = env.get("cuda_unusable_reason")
    lines.append(f"device auto: cpu ({reason})" if reason else "device auto: cuda")
    lines.append(f"Python {env['python']} on {env['platform']}")
    lines.extend(f"{name}: {version or 'not installed'}" for name, version in env["versions"].items())
    return "\n".join(lines)

