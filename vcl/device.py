"""Choosing the compute device explicitly: ``auto|cpu|cuda|cuda:N|mps``.

``auto`` takes an accelerator when one is present and logs the choice; asking for
a device that is absent is an error (exit 69), never a silent fallback to the CPU.
"""

from __future__ import annotations

import re
from typing import Any

from vcl.console import log
from vcl.errors import DeviceUnavailableError, UsageError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _cuda_count(torch: Any) -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available(torch: Any) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str = "auto") -> Any:
    """Return a ``torch.device`` for ``spec``; raise if it is unavailable."""
    import torch

    spec = spec.strip().lower()
    if not DEVICE_PATTERN.match(spec):
        raise UsageError(f"unknown device {spec!r}", None, "use auto, cpu, cuda, cuda:N or mps")
    if spec == "auto":
        if _cuda_count(torch) > 0:
            device = torch.device("cuda:0")
            log.info("device: auto picked %s (%s)", device, torch.cuda.get_device_name(0))
        elif _mps_available(torch):
            device = torch.device("mps")
            log.info("device: auto picked mps (Apple GPU)")
        else:
            device = torch.device("cpu")
            log.info("device: auto picked cpu (no CUDA or MPS device found)")
        return device
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available(torch):
            raise DeviceUnavailableError(
                "device mps is not available on this machine", None, "use --device cpu or auto"
            )
        return torch.device("mps")
    count = _cuda_count(torch)
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= count:
        found = f"{count} CUDA device(s) found" if count else "no CUDA device found"
        raise DeviceUnavailableError(
            f"device {spec} is not available ({found})", None, "use --device cpu or auto"
        )
    return torch.device(f"cuda:{index}")


def faiss_gpu_count() -> int:
    """GPUs faiss can use (0 with faiss-cpu, or faiss-gpu on a machine without one)."""
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def faiss_device(spec: str = "auto") -> int | None:
    """The faiss GPU index for ``--device`` (``None``: the CPU).

    faiss sees GPUs through its own CUDA runtime, so this asks faiss, not torch.
    Asking for a GPU that faiss cannot use is an error, never a silent CPU fallback.
    """
    from vcl.device import DEVICE_PATTERN, faiss_gpu_count

    spec = spec.strip().lower()
    if not DEVICE_PATTERN.match(spec):
        raise UsageError(f"unknown device {spec!r}", "--device", "use auto, cpu, cuda or cuda:N")
    if spec == "cpu":
        return None
    count = faiss_gpu_count()
    if spec == "auto":
        if count:
            log.info("device: auto picked faiss GPU 0 (%d GPU(s) visible to faiss)", count)
            return 0
        log.info("device: auto picked cpu (faiss sees no GPU)")
        return None
    if spec == "mps":
        raise DeviceUnavailableError(
            "faiss has no MPS backend", "--device", "use --device cpu or auto"
        )
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= count:
        found = f"faiss sees {count} GPU(s)" if count else "faiss sees no GPU"
        raise DeviceUnavailableError(
            f"device {spec} is not available ({found})", "--device", "use --device cpu or auto"
        )
    return index
