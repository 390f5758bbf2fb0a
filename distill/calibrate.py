"""Temperature scaling: one softmax temperature per class head, fitted on held-out labels.

A student's softmax is usually over-confident; dividing its logits by a fitted temperature makes the
released `*_scores` mean what they say (a 0.8 is right about 80% of the time) without changing any
argmax. The temperatures live in `StudentConfig.temperatures`.
"""

from __future__ import annotations

import numpy as np
import torch


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, max_iter: int = 200) -> float:
    """The temperature minimising held-out NLL (LBFGS on log T, so T stays positive)."""
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(y) == 0:
        return 1.0
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if np.isfinite(t) and 0.05 <= t <= 20 else 1.0


def fit_temperatures(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Temperatures for every head present in both dicts (e.g. `document_type`, `domain`)."""
    return {head: fit_temperature(logits[head], labels[head]) for head in logits if head in labels}
