"""SASA+'s step, plain PyTorch: statopt's QHM update and the two sums its statistic needs.

The specification of ``tricks_ext::sasa_step_`` (csrc/sasa/, triton_kernels/sasa.py), one
tensor at a time, in place on ``params`` and ``bufs``, math in fp32 (fp64 for fp64 params):
  g = grad + weight_decay x
  with momentum buffers h (``bufs`` not empty): h <- momentum h + (1 - momentum) g, and
      d = h when qhm_nu == 1, else d = (1 - qhm_nu) g + qhm_nu h;
  without (``bufs`` empty: statopt's momentum or qhm_nu of 0): d = g
  x <- x - lr d, with lr (a float64 tensor) rounded to the math dtype
written as statopt writes them in torch ops (``add`` with ``alpha``, ``addcmul``: one fused
multiply-add each in torch's kernels, the kernels' fma_rn), and returns float64 (sum <x_new, d>, sum ||d||^2) over every element, x_new as stored (rounded
to the param's dtype) and d before rounding. The optimizer's statistic is the first sum plus
lr / 2 times the second (tricks_ext.optim.SASA).
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from tricks_ext._dtypes import stats_dtype


@torch.no_grad()
def sasa_step(params: List[Tensor], grads: List[Tensor], bufs: List[Tensor], lr: Tensor, momentum: float,
              qhm_nu: float, weight_decay: float) -> Tensor:
    sums = torch.zeros(2, dtype=torch.float64, device=lr.device)
    for i, (p, grad) in enumerate(zip(params, grads)):
        acc = stats_dtype(p.dtype)
        x = p.to(acc)
        g = grad.to(acc).add(x, alpha=weight_decay)
        d = g
        if bufs:
            h = (bufs[i].to(acc) * momentum).add(g, alpha=1.0 - momentum)
            bufs[i].copy_(h)
            d = h if qhm_nu == 1.0 else (g * (1.0 - qhm_nu)).add(h, alpha=qhm_nu)
        p.copy_(torch.addcmul(x, d, -lr.to(acc)))
        d64 = d.reshape(-1).to(torch.float64)
        sums += torch.stack([torch.dot(p.reshape(-1).to(torch.float64), d64), torch.dot(d64, d64)]).to(sums.device)
    return sums
