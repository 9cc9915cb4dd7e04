"""Memory helpers for notebooks: what is using memory, and how much is left. CPU and GPU.

    from utils.memory import print_memory_status, profile_pytorch_memory
    print_memory_status()                          # this process, the machine, and the GPU if any
    profile_pytorch_memory(globals())              # the biggest tensors and models in a namespace

On a GPU machine the first question is usually "which of my variables holds the memory?": the
profile answers it by name, so you know what to `del` (or move with `.cpu()`).
"""

from __future__ import annotations

import resource
import sys
from typing import Any, Iterable

import torch

MB = 1024**2


def tensors_in(obj: Any) -> Iterable[torch.Tensor]:
    """The tensors an object holds: itself, a module's parameters and buffers, or those of a
    dict/list/tuple of them (one level deep, which covers {layer: sae} dictionaries)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(obj, dict):
        for value in obj.values():
            if isinstance(value, (torch.Tensor, torch.nn.Module)):
                yield from tensors_in(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            if isinstance(value, (torch.Tensor, torch.nn.Module)):
                yield from tensors_in(value)


def tensors_size(obj: Any) -> int:
    """Bytes held by the tensors of `obj` (each storage counted once, so tied weights count once)."""
    seen, total = set(), 0
    for tensor in tensors_in(obj):
        if tensor.device.type == "meta":
            continue
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), tensor.device)
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def _describe(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"Tensor {tuple(obj.shape)}"
    if isinstance(obj, (dict, list, tuple)):
        return f"{type(obj).__name__} of {len(obj)}"
    return type(obj).__name__


def _device(obj: Any) -> str:
    devices = sorted({str(t.device) for t in tensors_in(obj)})
    return ", ".join(devices) if devices else "-"


def memory_table(namespace: dict[str, Any], filter_device: str | None = None, min_mb: float = 0.0,
                 top: int = 15) -> list[tuple[str, str, str, float]]:
    """(name, object, device, size in MB) of the largest tensor-holding objects, largest first."""
    rows = []
    for name, obj in namespace.items():
        if name.startswith("_"):
            continue
        size = tensors_size(obj) / MB
        device = _device(obj)
        if size <= min_mb or size == 0 or (filter_device and filter_device not in device):
            continue
        rows.append((name, _describe(obj), device, size))
    rows.sort(key=lambda row: -row[3])
    return rows[:top]


def profile_pytorch_memory(namespace: dict[str, Any], filter_device: str | None = None, min_mb: float = 0.0,
                           top: int = 15) -> list[tuple[str, str, str, float]]:
    """Print the memory status and a table of the largest objects of `namespace` (e.g. globals())."""
    from tabulate import tabulate

    print_memory_status()
    rows = memory_table(namespace, filter_device, min_mb, top)
    print(tabulate([(n, o, d, f"{s:.2f}") for n, o, d, s in rows],
                   headers=["name", "object", "device", "size (MB)"], tablefmt="simple_outline"))
    return rows


def process_memory() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MB (psutil if installed)."""
    # ru_maxrss is in kB on Linux, in bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (MB if sys.platform == "darwin" else 1024)
    try:
        import psutil

        now = psutil.Process().memory_info().rss / MB
    except ImportError:
        now = float("nan")
    return {"rss_mb": now, "peak_rss_mb": peak}


def print_memory_status() -> None:
    """One line for this process and the machine's RAM, and one for each GPU if there is one."""
    proc = process_memory()
    line = f"Process: {proc['rss_mb']:.0f} MB resident (peak {proc['peak_rss_mb']:.0f} MB)"
    try:
        import psutil

        vm = psutil.virtual_memory()
        line += f" · RAM: {vm.available / 1024**3:.1f} GB free of {vm.total / 1024**3:.1f} GB"
    except ImportError:
        pass
    print(line)
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            print(f"cuda:{i}: {torch.cuda.memory_allocated(i) / 1024**3:.2f} GB allocated, "
                  f"{torch.cuda.memory_reserved(i) / 1024**3:.2f} GB reserved, "
                  f"{free / 1024**3:.2f} GB free of {total / 1024**3:.2f} GB")
