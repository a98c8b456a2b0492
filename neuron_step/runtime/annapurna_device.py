"""Device helper for generated programs: the XLA device on Trainium, else CUDA, else the CPU."""

import os
import time

_START = time.monotonic()
_XLA = None


def _xla():
    global _XLA
    if _XLA is None:
        try:
            import torch_xla  # noqa: F401  (present only on Neuron hosts)

            _XLA = torch_xla
        except ImportError:
            _XLA = False
    return _XLA


def get_device():
    import torch

    if os.environ.get("ANNAPURNA_DEVICE") == "cpu":
        return torch.device("cpu")
    xla = _xla()
    if xla:
        return xla.device()  # torch-xla 2.9 API
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def step_sync():
    """Cut the XLA graph once per training step; a no-op elsewhere."""
    xla = _xla()
    if xla:
        xla.sync()


def time_budget_s():
    """Seconds this program may train for, counted from its start (ANNAPURNA_TIME_BUDGET_S)."""
    try:
        return max(1.0, float(os.environ.get("ANNAPURNA_TIME_BUDGET_S", "600")))
    except ValueError:
        return 600.0


def elapsed_s():
    return time.monotonic() - _START
