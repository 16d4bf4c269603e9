"""Where a model runs: the ordered set of devices it occupies, and each module's device.

Why it matters: a model loaded with `device_map="auto"` spreads its layers over several GPUs (or
CPU and GPU). A CUDA event recorded on GPU 0 says nothing about a layer on GPU 1 (events of two
devices cannot even be compared), a `torch.cuda.synchronize()` of GPU 0 does not wait for GPU 1,
and NVML must charge the run for the GPUs it ran on, not all of the machine's.

A module runs where accelerate's hook sends its inputs (`_hf_hook.execution_device`, set for
offloaded modules whose weights sit on the CPU or the meta device), else where its own
parameters (or buffers) are. A module with neither (an activation, a rotary module without
buffers) runs on its parent's device: `module_device` returns None for it and the caller passes
the enclosing module's device.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = [
    "CPU",
    "cuda_indices",
    "model_devices",
    "module_device",
    "normalize",
    "primary_device",
]

CPU = torch.device("cpu")


def normalize(device: Any) -> torch.device | None:
    """A torch.device with its index (`cuda` -> `cuda:<current>`), or None for `meta`/`disk`
    (weights not resident anywhere a kernel runs)."""
    if device is None:
        return None
    if isinstance(device, int):
        return torch.device("cuda", device)
    if isinstance(device, str) and device == "disk":
        return None
    dev = device if isinstance(device, torch.device) else torch.device(device)
    if dev.type == "meta":
        return None
    if dev.type == "cuda" and dev.index is None:
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return torch.device("cuda", index)
    return dev


def module_device(module: nn.Module) -> torch.device | None:
    """The device `module` runs on: accelerate's execution device, else its first parameter's or
    buffer's; None when nothing of its own says (use its parent's). Callers look it up through
    this module (`devices.module_device`), so tests can place modules on fake devices."""
    hook = getattr(module, "_hf_hook", None)
    execution = normalize(getattr(hook, "execution_device", None)) if hook is not None else None
    if execution is not None:
        return execution
    for t in _tensors(module):
        dev = normalize(t.device)
        if dev is not None:
            return dev
    return None


def _tensors(module: nn.Module) -> Iterable[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def model_devices(model: nn.Module) -> tuple[torch.device, ...]:
    """Every device the model runs on, in order of first appearance over its modules (the
    embedding's device first): the devices whose events and syncs time it, and whose power the
    run is charged."""
    seen: dict[torch.device, None] = {}
    for mod in model.modules():
        dev = module_device(mod)
        if dev is not None:
            seen.setdefault(dev, None)
    return tuple(seen) or (CPU,)


def primary_device(model: nn.Module) -> torch.device:
    """Where the inputs go: the first device the model runs on (its embedding's)."""
    return model_devices(model)[0]


def cuda_indices(devices: Iterable[torch.device]) -> list[int]:
    """The CUDA device indices among `devices` (as CUDA numbers them: CUDA_VISIBLE_DEVICES
    applied), in order."""
    return [d.index for d in devices if d.type == "cuda" and d.index is not None]
