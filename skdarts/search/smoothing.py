"""SmoothDARTS' random perturbation of the architecture weights.

References
----------
.. [1] X. Chen, C.-J. Hsieh. "Stabilizing Differentiable Architecture Search
   via Perturbation-based Regularization". ICML 2020.
"""

from __future__ import annotations

import torch

__all__ = ["perturb_arch_weights"]


def _project(weights: torch.Tensor) -> torch.Tensor:
    """Clip mixing weights to [0, 1] and renormalise each edge to sum 1.

    An edge whose weights all clip to 0 puts all its mass on its largest
    entry before clipping (as SmoothDARTS does).
    """
    argmax = weights.argmax(dim=-1, keepdim=True)
    clipped = weights.clamp(0.0, 1.0)
    total = clipped.sum(dim=-1, keepdim=True)
    fallback = torch.zeros_like(clipped).scatter_(-1, argmax, 1.0)
    clipped = torch.where(total > 0, clipped, fallback)
    return clipped / clipped.sum(dim=-1, keepdim=True)


def perturb_arch_weights(weights, epsilon: float, generator=None):
    """SDARTS-RS: add uniform noise in [-epsilon, epsilon] and project back.

    Parameters
    ----------
    weights : sequence of torch.Tensor
        Softmaxed architecture weights (one tensor per cell type).
    epsilon : float
    generator : torch.Generator, optional
        Source of the noise, on any device (a CPU generator serves weights
        on a GPU).

    Returns
    -------
    tuple of torch.Tensor
        Detached perturbed weights, each row summing to 1.

    Examples
    --------
    >>> w = torch.full((3, 4), 0.25)
    >>> p, = perturb_arch_weights([w], 0.1)
    >>> bool(torch.allclose(p.sum(-1), torch.ones(3)))
    True
    """
    out = []
    for w in weights:
        # Drawn where the generator lives (a CPU generator cannot draw on a
        # GPU), then moved to the weights.
        where = generator.device if generator is not None else w.device
        noise = torch.empty(w.shape, device=where).uniform_(
            -epsilon, epsilon, generator=generator
        )
        out.append(_project(w.detach() + noise.to(w.device)))
    return tuple(out)
