"""The meters of `bench_trainers.py`: the peak memory of one step (CUDA counter, profiler events or saved tensors),
the profiler's op breakdown, quartiles and the environment record."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

import advtrain
from trainer_cases import MiB, _version, smart_pytorch, vat_pytorch

# ------------------------------------------------------------------------------------------------------------------
# Memory.


def _profiler_peak(prof) -> int:
    """Peak of the running sum of the CPU allocation (+) and free (−) events, in start-time order, in bytes."""
    # `prof.events()` folds the allocations made inside an op into that op; the raw kineto events keep every
    # allocation and free as its own "[memory]" event with a signed byte count.
    events = [
        e for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


class SavedTensorsTracker:
    """Fallback meter: the peak of the live bytes of the tensors autograd saves for backward (activations)."""

    def __init__(self):
        self.live: dict[int, int] = {}
        self.peak = 0

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.live:
            self.live[key] = storage.nbytes()
            self.peak = max(self.peak, sum(self.live.values()))
            weakref.finalize(tensor, self.live.pop, key, None)
        return tensor

    @contextlib.contextmanager
    def track(self):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
DROPOUT_OPS = ("aten::bernoulli_", "aten::native_dropout")


def op_breakdown(prof) -> dict[str, float]:
    """Self CPU seconds of the profiled step split into matrix products, dropout masks and everything else."""
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages) / 1e6
    matmul = sum(e.self_cpu_time_total for e in averages if e.key in MATMUL_OPS) / 1e6
    dropout = sum(e.self_cpu_time_total for e in averages if e.key in DROPOUT_OPS) / 1e6
    return {"total": total, "matmul": matmul, "dropout": dropout, "other": total - matmul - dropout}


def measure_peak(fn: Callable[[], Any], device: str, method: str) -> tuple[int, Any]:
    """Peak memory of ``fn()`` above the level live before it (bytes), and the profiler object (CPU) or None."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base, None
    if method == "profiler":
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        return _profiler_peak(prof), prof
    tracker = SavedTensorsTracker()
    with tracker.track():
        fn()
    return tracker.peak, None


def memory_sanity_check(device: str) -> dict[str, Any]:
    """Runs the meter on a step whose peak is known: 100 MiB allocated and written, 50 MiB more, the first freed,
    30 MiB more, all freed — the peak is 150 MiB."""

    def known_step():
        a = torch.empty(100 * MiB, dtype=torch.uint8, device=device).fill_(1)
        b = torch.empty(50 * MiB, dtype=torch.uint8, device=device).fill_(2)
        del a
        c = torch.empty(30 * MiB, dtype=torch.uint8, device=device).fill_(3)
        del b, c

    expected = 150 * MiB
    try:
        measured, _ = measure_peak(known_step, device, "profiler")
    except (AttributeError, RuntimeError) as error:  # profiler internals differ across torch versions
        return {
            "method": "saved_tensors_hooks", "expected_bytes": expected, "measured_bytes": None, "error": repr(error)
        }
    ok = abs(measured - expected) <= 0.01 * expected
    method = ("cuda.max_memory_allocated" if device == "cuda" else "profiler") if ok else "saved_tensors_hooks"
    return {"method": method, "expected_bytes": expected, "measured_bytes": measured, "ok": ok}


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def environment(device: str) -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "advtrain": advtrain.__version__,
        "smart_pytorch": _version("smart-pytorch") if smart_pytorch is not None else "not installed",
        "vat_pytorch": _version("vat-pytorch") if vat_pytorch is not None else "not installed",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        env["load_average_at_start"] = os.getloadavg()
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env
