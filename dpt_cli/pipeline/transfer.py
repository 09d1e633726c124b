"""Device-to-host copies that do not stall the thread that starts them."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def to_host(tensors: list[torch.Tensor]) -> Callable[[], list[np.ndarray]]:
    """Start copying `tensors` to host memory; the returned call waits for them and gives numpy arrays.

    On CUDA the copies go into pinned buffers on the current stream, ordered after the work that
    produced the tensors, and one event marks their end: only the thread that calls the result
    waits, and only for these copies. Elsewhere (CPU, MPS) the copy is made at once.
    """
    if not tensors or tensors[0].device.type != "cuda":
        arrays = [t.detach().cpu().numpy() for t in tensors]
        return lambda: arrays
    pinned = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for host, t in zip(pinned, tensors):
        host.copy_(t, non_blocking=True)
    # on the tensors' own device's stream (cuda:N need not be the current device); a blocking
    # event lets waiting writer threads sleep instead of spinning on a core
    done = torch.cuda.Event(blocking=True)
    done.record(torch.cuda.current_stream(tensors[0].device))

    def wait() -> list[np.ndarray]:
        done.synchronize()
        return [h.numpy() for h in pinned]

    return wait
