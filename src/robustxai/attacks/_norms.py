"""Threat-model geometry shared by the attacks: L∞ and L2 balls in [0, 1] pixel space.

The step and projection formulas follow Foolbox 3 operation for operation (float32), so that PGD without a
random start reproduces Foolbox's ``LinfPGD`` / ``L2PGD`` bit for bit; the tests check this.
"""

from __future__ import annotations

import torch

from robustxai._errors import RobustXAIError

NORMS = ("linf", "l2")

_TINY = 1e-12  # guards divisions by a zero norm (Foolbox uses the same floor)


def check_norm(norm: object) -> str:
    """Return the threat-model norm as ``"linf"`` or ``"l2"`` (case-insensitive), or raise a clear error."""
    value = str(norm).lower()
    if value not in NORMS:
        raise RobustXAIError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return value


def flat_l2(x: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm ``[B]`` of a batch, computed as sqrt(sum of squares) like Foolbox and AutoAttack."""
    return x.reshape(x.shape[0], -1).square().sum(dim=1).sqrt()


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def unit_l2(x: torch.Tensor) -> torch.Tensor:
    """Scale every sample to unit L2 norm (zero samples stay zero)."""
    return x * _per_sample(1 / torch.clamp(flat_l2(x), min=_TINY), x)


def project(adv: torch.Tensor, images: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Project ``adv`` onto the ``norm`` ball of radius ``eps`` around ``images`` and then onto [0, 1].

    The L∞ projection is a min/max clamp, so it leaves a point that is already inside the ball unchanged to
    the bit. The L2 projection rescales the perturbation of samples outside the ball; clipping to [0, 1]
    afterwards only moves coordinates towards the clean image (which lies in [0, 1]), so it never leaves the
    ball.
    """
    if norm == "l2":
        delta = adv - images
        scale = torch.clamp(eps / torch.clamp(flat_l2(delta), min=_TINY), max=1.0)
        return torch.clamp(images + delta * _per_sample(scale, delta), 0.0, 1.0)
    return torch.clamp(torch.minimum(torch.maximum(adv, images - eps), images + eps), 0.0, 1.0)


def step(
    adv: torch.Tensor, grad: torch.Tensor, images: torch.Tensor, eps: float, size: float, norm: str
) -> torch.Tensor:
    """One ascent step of length ``size`` along the normalised gradient, then projection (Foolbox order).

    L∞: ``x + size·sign(g)``; L2: ``x + size·g/‖g‖₂``. Then ``x0 + clip_ball(x − x0)`` and clip to [0, 1].
    """
    if norm == "l2":
        moved = adv + size * unit_l2(grad)
        delta = moved - images
        factor = torch.clamp(eps / torch.clamp(flat_l2(delta), min=_TINY), max=1.0)
        return torch.clamp(images + delta * _per_sample(factor, delta), 0.0, 1.0)
    moved = adv + size * grad.sign()
    return torch.clamp(images + torch.clamp(moved - images, -eps, eps), 0.0, 1.0)


def random_start(images: torch.Tensor, eps: float, norm: str, gen: torch.Generator) -> torch.Tensor:
    """A seeded point drawn uniformly from the ``norm`` ball around ``images``, clipped to [0, 1].

    L∞: uniform in [−ε, ε] per pixel. L2: uniform in the ball (Voelker et al. 2017: the first n coordinates
    of a uniform point on the (n+1)-sphere, as Foolbox does). The noise is drawn on the CPU generator
    ``gen`` and moved to the images' device, so results do not depend on the device.
    """
    if norm == "l2":
        b = images.shape[0]
        n = images[0].numel()
        g = torch.randn((b, n + 2), generator=gen, dtype=images.dtype)
        g = g / g.square().sum(dim=1, keepdim=True).sqrt()
        noise = g[:, :n].reshape(images.shape).to(images.device)
        return torch.clamp(images + eps * noise, 0.0, 1.0)
    noise = torch.rand(images.shape, generator=gen, dtype=images.dtype) * 2 - 1
    return project(images + eps * noise.to(images.device), images, eps)
