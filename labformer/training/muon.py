"""Muon (Jordan et al. 2024) with the precision of its Newton–Schulz orthogonalisation as a setting.

``torch.optim.Muon`` always orthogonalises in bfloat16 (``grad.bfloat16()``). On a GPU that is the
right choice; on a CPU without bfloat16 matrix units (most laptops: AVX2, no AVX-512 BF16 or AMX) a
bfloat16 matrix product is emulated: the GPT's Muon step took 25× longer in bf16 than in float32 under
the AVX2 profile (``benchmarks/cpu_profiles.py``), so the optimiser dominated a training step.

This Muon is torch's algorithm, step for step — momentum, Nesterov, the quintic iteration and its
coefficients, decoupled weight decay, the learning-rate adjustment — with ``precision`` "bf16" (torch's)
or "float32". Its state dict has torch's layout (a ``momentum_buffer`` per matrix, the same group keys),
so checkpoints of either load into the other; the precision is the optimiser's, set by the run's saved
config, not by a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["MUON_PRECISIONS", "NS_COEFFICIENTS", "Muon", "adjusted_lr", "orthogonalise"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's (from Keller Jordan's Muon)
NS_STEPS = 5
EPS = 1e-7
MUON_PRECISIONS = {"float32": torch.float32, "bf16": torch.bfloat16}


def orthogonalise(
    matrix: Tensor,
    dtype: torch.dtype = torch.float32,
    steps: int = NS_STEPS,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = EPS,
) -> Tensor:
    """An approximate U Vᵀ of ``matrix`` (m, n) = U S Vᵀ by ``steps`` quintic Newton–Schulz iterations
    computed in ``dtype``: its singular values land near 1 (roughly in [0.5, 1.5], by design — the
    coefficients trade exactness for speed). Returns (m, n) in ``dtype``; the same operations, in the same
    order, as ``torch.optim.Muon``'s, which is this function with ``dtype=torch.bfloat16``."""
    if matrix.dim() != 2:
        raise ValueError(f"orthogonalise takes a 2-D matrix; got shape {tuple(matrix.shape)}")
    a, b, c = coefficients
    x = matrix.to(dtype, copy=True)  # a copy even in float32: the input (a momentum buffer) is never changed
    tall = matrix.size(0) > matrix.size(1)
    if tall:
        x = x.T  # iterate on the wide side: the Gram matrix is the smaller one
    x.div_(x.norm().clamp(min=eps))  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        gram = x @ x.T
        update = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b·A + c·A²
        x = torch.addmm(x, update, x, beta=a)  # a·X + (b·A + c·A²)·X
    return x.T if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """torch.optim.Muon's learning-rate scaling for a (A, B) matrix: "original" √max(1, A/B), or
    "match_rms_adamw" 0.2·√max(A, B) (the update's RMS then matches AdamW's; Liu et al. 2025)."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    raise ValueError(f"adjust_lr_fn must be 'original' or 'match_rms_adamw'; got {adjust_lr_fn!r}")


class Muon(torch.optim.Optimizer):
    """Muon for 2-D weight matrices: momentum (Nesterov by default), orthogonalised by
    :func:`orthogonalise` in ``precision``, decoupled weight decay, a shape-adjusted learning rate.

    Args:
        params: 2-D parameters (or groups of them).
        lr, weight_decay, momentum, nesterov, ns_steps, adjust_lr_fn: as in ``torch.optim.Muon``.
        precision: "float32" or "bf16" (torch.optim.Muon's), the dtype of the orthogonalisation only;
            parameters, gradients and the momentum stay in their own dtype.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = NS_STEPS,
        adjust_lr_fn: Literal["original", "match_rms_adamw"] | None = None,
        precision: Literal["float32", "bf16"] = "float32",
    ) -> None:
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0; got {lr}")
        if not momentum >= 0:
            raise ValueError(f"momentum must be >= 0; got {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        if precision not in MUON_PRECISIONS:
            raise ValueError(f"precision must be one of {list(MUON_PRECISIONS)}; got {precision!r}")
        adjusted_lr(1.0, adjust_lr_fn, torch.Size((1, 1)))  # refuses an unknown adjustment now
        defaults = dict(
            lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, ns_coefficients=NS_COEFFICIENTS,
            eps=EPS, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
        )  # fmt: skip
        super().__init__(params, defaults)
        self.precision = precision
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.dim() != 2:
                    raise ValueError(f"Muon takes 2-D parameters only; got shape {tuple(parameter.shape)}")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: ANN401 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        dtype = MUON_PRECISIONS[self.precision]
        for group in self.param_groups:
            lr, decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
            for parameter in group["params"]:
                grad = parameter.grad
                if grad is None:
                    continue
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
                buffer = state["momentum_buffer"]
                buffer.lerp_(grad, 1 - momentum)
                update = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                update = orthogonalise(update, dtype, group["ns_steps"], tuple(group["ns_coefficients"]), group["eps"])
                parameter.mul_(1 - lr * decay)
                parameter.add_(update, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], parameter.shape))
        return loss
