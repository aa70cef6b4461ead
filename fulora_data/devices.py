"""``--device``: a torch device this machine has, checked before any work.

A device named wrong (``banana``) or one the machine lacks (``cuda`` without a GPU) used to surface as a
torch traceback after the data was built; :func:`check_device` says it in one sentence up front.
"""

from __future__ import annotations

import re

from fulora_data.errors import ConfigError

KINDS = ("cpu", "cuda", "mps")


def check_device(value: str | None, option: str = "--device") -> str | None:
    """Refuse a device that is malformed or not on this machine; ``None`` (pick one) passes.

    Args:
        value: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, or ``None``.
        option: How the user named it, for the message.

    Returns:
        ``value`` unchanged.

    Raises:
        ConfigError: Quoting the value and saying what this machine has.
    """
    if value is None:
        return None
    text = str(value).strip()
    match = re.fullmatch(r"(?P<kind>[a-z]+)(?::(?P<index>\d+))?", text)
    if match is None or match["kind"] not in KINDS:
        raise ConfigError(f"{option} must be cpu, cuda, cuda:N or mps, got {value!r}")
    kind, index = match["kind"], int(match["index"]) if match["index"] is not None else None
    if kind == "cpu":
        if index not in (None, 0):
            raise ConfigError(f"{option} {value!r}: the CPU has no index {index}; use --device cpu")
        return value
    import torch

    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"{option} {value!r} needs a CUDA GPU and torch sees none here; use --device cpu"
            )
        if index is not None and index >= count:
            raise ConfigError(
                f"{option} {value!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise ConfigError(
                f"{option} {value!r} needs Apple's MPS backend, which this machine lacks; use --device cpu"
            )
    return value
