"""Compute precision chosen by the hardware: ``auto`` -> bf16 autocast where the machine has fast
bf16 matmuls, fp32 elsewhere.

This module travels with checkpoints (the ``multimodal-ner`` pipeline uses it), so it imports only
torch and the standard library. Training (``mner_hf.training.precision``) uses the same functions.

``auto`` picks bf16 autocast

* on CUDA when ``torch.cuda.is_bf16_supported()`` (Ampere and newer);
* on CPU when torch reports AVX512-BF16 (``torch.cpu._is_avx512_bf16_supported()``) or AMX tiles
  (``torch.cpu._is_amx_tile_supported()``): oneDNN then runs bf16 matmuls natively (measured,
  2 cores: with AMX square bf16 matmuls 1.0-1.6 TFLOP/s vs 234 GFLOP/s fp32 and the TPM-MI train
  step 1.9x faster; AVX512-BF16 without AMX 0.37-0.43 TFLOP/s vs 0.16-0.20 and the step 2.3x
  faster, ``benchmarks/README.md``);

and fp32 everywhere else: on a CPU without those instructions bf16 is emulated and autocast is
about 10x SLOWER than fp32. ``fp32``, ``bf16`` and ``fp16`` can always be requested explicitly
(the reason then says whether the hardware has native support).

Public API
----------
``PRECISIONS = ("auto", "fp32", "bf16", "fp16")``
``cpu_bf16_capabilities() -> dict[str, bool]``   what torch reports about this CPU
``resolve_precision(requested="auto", device="cpu") -> PrecisionChoice``
``PrecisionChoice``: ``.precision`` ("fp32" | "bf16" | "fp16"), ``.requested``, ``.device_type``,
``.reason`` (one sentence), ``.dtype`` (the autocast dtype or None), ``.autocast()`` (a context
manager: ``torch.autocast`` or a no-op), ``.to_dict()`` (for results.json / the model card).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_ALIASES = {"float32": "fp32", "no": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


def _probe(name: str) -> bool:
    """Call ``torch.cpu.<name>()``; False when this torch build lacks the probe."""
    fn = getattr(torch.cpu, name, None)
    if fn is None:
        return False
    try:
        return bool(fn())
    except Exception:  # noqa: BLE001 - a failing probe means "not reported"
        return False


def cpu_bf16_capabilities() -> dict[str, bool]:
    """``{"avx512_bf16": ..., "amx_tile": ...}`` as torch reports them for this CPU."""
    return {"avx512_bf16": _probe("_is_avx512_bf16_supported"), "amx_tile": _probe("_is_amx_tile_supported")}


def _device_type(device: str | torch.device | int | None) -> str:
    if device is None:
        return "cpu"
    if isinstance(device, int):
        return "cuda" if device >= 0 else "cpu"
    return torch.device(device).type


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run / pipeline uses and why (see the module docstring)."""

    precision: str
    requested: str
    device_type: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """Autocast dtype (``torch.bfloat16`` / ``torch.float16``) or None for fp32."""
        return _DTYPES[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast(device_type, dtype)`` for bf16/fp16, a no-op context for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.precision} on {self.device_type} ({self.reason})"


def _normalise(requested: str | None) -> str:
    value = "auto" if requested is None else str(requested).strip().lower()
    value = _ALIASES.get(value, value)
    if value not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    return value


def resolve_precision(requested: str | None = "auto", device: str | torch.device | int | None = "cpu") -> PrecisionChoice:
    """Resolve ``requested`` ("auto" | "fp32" | "bf16" | "fp16"; None = "auto") for ``device``.

    Raises:
        ValueError: unknown precision name, or fp16/bf16 requested on a CUDA device without support.
    """
    requested = _normalise(requested)
    device_type = _device_type(device)
    if device_type == "cuda":
        bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        hw = "CUDA device supports bf16" if bf16_ok else "CUDA device lacks bf16 support"
        if requested == "auto":
            return PrecisionChoice("bf16" if bf16_ok else "fp32", "auto", "cuda", f"auto: {hw}")
        if requested == "bf16" and not bf16_ok:
            raise ValueError("precision bf16 requested but this CUDA device lacks bf16 support (use fp16 or fp32)")
        return PrecisionChoice(requested, requested, "cuda", f"requested; {hw}")
    if device_type != "cpu":  # mps, xpu, ...: no capability probe we trust; never guess
        if requested == "auto":
            return PrecisionChoice("fp32", "auto", device_type, f"auto: no bf16 capability probe for {device_type}")
        return PrecisionChoice(requested, requested, device_type, "requested")
    caps = cpu_bf16_capabilities()
    found = [name for name, flag in (("AVX512-BF16", caps["avx512_bf16"]), ("AMX", caps["amx_tile"])) if flag]
    hw = f"CPU reports {' and '.join(found)}" if found else "CPU reports neither AVX512-BF16 nor AMX"
    if requested == "auto":
        if found:
            return PrecisionChoice("bf16", "auto", "cpu", f"auto: {hw} (native bf16 matmuls)")
        return PrecisionChoice("fp32", "auto", "cpu", f"auto: {hw} (bf16 would be emulated, ~10x slower)")
    if requested == "bf16" and not found:
        return PrecisionChoice("bf16", "bf16", "cpu", f"requested; {hw}: bf16 is emulated and slow here")
    return PrecisionChoice(requested, requested, "cpu", f"requested; {hw}")
