"""WDNO: diffusion over the wavelet coefficients of whole trajectories (Hu et al. 2025, "Wavelet
Diffusion Neural Operator") for 1D forced trajectories on (t, x). Two tasks:

- ``simulate``: p(u | u0, f), the trajectory u given the initial state u0 and the forcing f;
- ``control``: p(u, f | u0, uT), trajectory and forcing given the initial and final states,
  sampled with guidance of the control objective J toward a target final state.

Layout. The task's physical fields on the (t, x) grid, [B, F, nt, nx]: u, f, u0 repeated over t
and (control) uT repeated over t. One ``WaveletTransform`` over (t, x) turns them into F * bands
coefficient channels (bands = 4 per level: aa, ad, da, dd), each divided by a fixed max-abs scale
measured on the training data (``fit_scale``; WDNO's per-subband scaling, which the reference
note found safer than standardising heavy-tailed detail bands).

Diffusion. Cosine VP path, the network predicts x0 (the reference note's tiny run learned nothing
with noise prediction). The known channels (simulate: f, u0; control: u0, uT) are overwritten
with their clean values before every network call, the loss is zero on them, and the x0 hook
returns them exactly (with WDNO's clamp of x0 to [-1, 1] on the rest). Sampling: DDIM, eta = 1,
50 steps.

``wavelet="none"`` runs the same diffusion on the physical (t, x) grid: the physical-space
baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polydiff.core import Method, VPCosine, register_method, sample
from polydiff.core.errors import InputError
from polydiff.core.method import Config
from polydiff.core.utils import expand_like
from polydiff.pde.checks import batch_of
from polydiff.pde.control import control_objective
from polydiff.pde.nets import CoefficientUNet, CoefficientUNetConfig
from polydiff.pde.wavelets import WaveletTransform

# the fields of each task (u0, uT: those states repeated over t) and the known ones among them
TASKS = {
    "simulate": (("u", "f", "u0"), ("f", "u0")),
    "control": (("u", "f", "u0", "uT"), ("u0", "uT")),
}
LOSS_WEIGHTS = ("uniform", "energy")
TRAIN_TIMES = ("uniform", "high")


class PhysicalSpace(nn.Module):
    """The identity in place of the wavelet transform: diffusion on the (t, x) grid itself, the
    DiffPhyCon-style baseline (Wei et al. 2024) of the same method."""

    bands = 1

    def forward(self, x: Tensor) -> Tensor:
        return x

    def inverse(self, x: Tensor) -> Tensor:
        return x


@dataclass(frozen=True)
class WDNOConfig(Config):
    nx: int = 128
    nt: int = 16
    wavelet: str = "bior2.4"
    """A PyWavelets name, or "none": the physical-space baseline (no transform)."""
    levels: int = 1
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    mid_attention: bool = True
    clamp: float = 1.0
    """x0 predictions of the unknown channels are clamped to [-clamp, clamp] (scaled units)."""
    task: str = "simulate"
    """"simulate": p(u | u0, f); "control": p(u, f | u0, uT), sampled with guidance of J."""
    loss_weight: str = "uniform"
    """"uniform": every unknown channel counts the same in scaled units (WDNO's); "energy":
    channel c weighted by scale_c^2 (normalised to mean 1), i.e. the error in the units of the
    fields, where the coarse band holds most of the energy."""

    train_times: str = "uniform"
    """Diffusion times of the loss: "uniform" over the path's times, or "high": density rising
    linearly with t (t = sqrt(U) on [0, 1]), three quarters of the draws in the upper half, where
    the trajectory must come from the known channels rather than from x_t."""

    def __post_init__(self) -> None:
        if self.train_times not in TRAIN_TIMES:
            raise InputError(
                f"train_times: expected one of {TRAIN_TIMES}, got {self.train_times!r}"
            )
        if self.task not in TASKS:
            raise InputError(f"task: expected one of {tuple(TASKS)}, got {self.task!r}")
        if self.loss_weight not in LOSS_WEIGHTS:
            raise InputError(
                f"loss_weight: expected one of {LOSS_WEIGHTS}, got {self.loss_weight!r}"
            )


class WDNONet(nn.Module):
    """The denoiser and the per-channel coefficient scales (a buffer, saved with the weights)."""

    def __init__(self, unet: CoefficientUNet, channels: int) -> None:
        super().__init__()
        self.unet = unet
        self.register_buffer("scale", torch.ones(channels))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.unet(x, t)


@register_method
class WDNO(Method):
    """See the module docstring. ``batch`` for the loss: a dict with ``u`` and ``f`` [B, nt, nx]."""

    domain, name, config_class = "pde", "wdno", WDNOConfig

    def __init__(self, config: WDNOConfig, net: nn.Module | None = None) -> None:
        self.dwt = (
            PhysicalSpace()
            if config.wavelet == "none"
            else WaveletTransform(config.wavelet, ndim=2, levels=config.levels)
        )
        super().__init__(config, net)
        self.path = VPCosine()
        self.fields, known_fields = TASKS[config.task]
        known = torch.tensor([name in known_fields for name in self.fields])
        self.known = known.repeat_interleave(self.dwt.bands)  # channel-wise

    def build_net(self) -> nn.Module:
        c = self.config
        for name, size in (("nt", c.nt), ("nx", c.nx)):
            levels = 0 if c.wavelet == "none" else c.levels
            multiple = 2**levels * 2 ** (len(c.channel_mult) - 1)
            if size % multiple:
                raise InputError(
                    f"{name}: {size} must be a multiple of {multiple} "
                    f"(2**{levels} wavelet levels times the U-Net's {len(c.channel_mult)} levels)"
                )
        channels = len(TASKS[c.task][0]) * self.dwt.bands
        unet = CoefficientUNet(
            CoefficientUNetConfig(
                in_channels=channels, out_channels=channels, channels=c.channels,
                channel_mult=c.channel_mult, mid_attention=c.mid_attention,
            )
        )  # fmt: skip
        return WDNONet(unet, channels)

    # --- coefficients --------------------------------------------------------------------------

    def encode(self, u: Tensor, f: Tensor, u0: Tensor, uT: Tensor | None = None) -> Tensor:
        """[B, nt, nx] trajectory and forcing, [B, nx] initial (and, for control, final) state
        -> scaled coefficients of the task's fields."""
        c, dtype = self.config, self.net.scale.dtype
        given = {
            "u": batch_of("u", u, (c.nt, c.nx), dtype),
            "f": batch_of("f", f, (c.nt, c.nx), dtype),
            "u0": batch_of("u0", u0, (c.nx,), dtype)[:, None].expand(-1, c.nt, -1),
        }
        if "uT" in self.fields:
            given["uT"] = batch_of("uT", uT, (c.nx,), dtype)[:, None].expand(-1, c.nt, -1)
        fields = torch.stack([given[name] for name in self.fields], 1)
        coeffs = self.dwt(fields)
        return coeffs / self.net.scale[:, None, None]

    def decode(self, coeffs: Tensor) -> tuple[Tensor, Tensor]:
        """Scaled coefficients -> (u, f), each [B, nt, nx]."""
        fields = self.dwt.inverse(coeffs * self.net.scale[:, None, None])
        return fields[:, 0], fields[:, 1]

    @torch.no_grad()
    def fit_scale(self, u: Tensor, f: Tensor) -> Tensor:
        """Set each channel's scale to its max |coefficient| over the data (u, f: [N, nt, nx])."""
        self.net.scale.fill_(1.0)
        coeffs = self.encode(u, f, u[:, 0], u[:, -1])
        peak = coeffs.abs().amax((0, 2, 3))
        # channels that are zero by construction (u0's detail bands along t) keep the scale 1
        self.net.scale.copy_(torch.where(peak > 1e-6 * peak.max(), peak, torch.ones_like(peak)))
        return self.net.scale

    # --- training ------------------------------------------------------------------------------

    def _overwrite_known(self, x: Tensor, known_values: Tensor) -> Tensor:
        return torch.where(self.known.to(x.device)[:, None, None], known_values, x)

    def loss_fn(self, net: nn.Module, batch: dict) -> Tensor:
        """Mean squared x0 error over the unknown channels at a uniform random time (weighted
        per channel by ``config.loss_weight``)."""
        u = batch["u"]
        x0 = self.encode(u, batch["f"], u[:, 0], u[:, -1])
        t = self.path.sample_t(x0.shape[0], device=x0.device)
        if self.config.train_times == "high":  # from uniform on [t_end, t_start] to density ~ t
            lo, hi = self.path.t_end, self.path.t_start
            t = lo + (hi - lo) * ((t - lo) / (hi - lo)).sqrt()
        x_t = self._overwrite_known(self.path.marginal(x0, t, torch.randn_like(x0)), x0)
        pred = net(x_t, t.to(x0.dtype))
        unknown = ~self.known.to(x0.device)
        per_channel = (pred - x0)[:, unknown].square().mean((0, 2, 3))
        if self.config.loss_weight == "energy":
            weight = self.net.scale[unknown].square()
            return (per_channel * weight / weight.mean()).mean()
        return per_channel.mean()

    # --- sampling ------------------------------------------------------------------------------

    def _sample(self, known: Tensor, guide, *, steps: int, eta: float, generator) -> Tensor:
        """DDIM over the coefficients with the known channels held; ``guide(x0, t)`` (if any)
        moves each clamped x0 prediction (J is judged where the sampler will step), which is
        then clamped again."""
        lim = self.config.clamp

        def model(x: Tensor, t: Tensor) -> Tensor:
            return self.net(self._overwrite_known(x, known), t)

        def x0_hook(x0: Tensor, x: Tensor, t: Tensor) -> Tensor:
            x0 = x0.clamp(-lim, lim)
            if guide is not None:
                x0 = guide(x0, t).clamp(-lim, lim)
            return self._overwrite_known(x0, known)

        x_init = torch.randn(known.shape, generator=generator, dtype=known.dtype).to(known.device)
        return sample(
            model, x_init, path=self.path, solver="ddim", solver_kwargs={"eta": eta},
            prediction="x0", steps=steps, x0_hook=x0_hook, denoise_final=True,
            generator=generator,
        )  # fmt: skip

    def _require_task(self, task: str) -> None:
        if self.config.task != task:
            raise InputError(f"task: this model was trained for {self.config.task!r}, not {task!r}")

    @torch.no_grad()
    def sample_coefficients(
        self, u0: Tensor, f: Tensor, *, steps: int = 50, eta: float = 1.0, generator=None
    ) -> Tensor:
        """Simulation: the scaled coefficients of all fields, sampled with the channels of f and
        u0 held at their clean values."""
        self._require_task("simulate")
        f = batch_of("f", f, (self.config.nt, self.config.nx), self.net.scale.dtype)
        known = self.encode(torch.zeros_like(f), f, u0)
        return self._sample(known, None, steps=steps, eta=eta, generator=generator)

    def sample(self, u0: Tensor, f: Tensor, **options) -> Tensor:
        """Simulate: trajectories u [B, nt, nx] for initial states u0 [B, nx] under the forcing
        f [B, nt, nx] (options: ``steps``, ``eta``, ``generator``); u[:, 0] is u0."""
        u, _ = self.decode(self.sample_coefficients(u0, f, **options))
        u0 = torch.as_tensor(u0).to(u.dtype)
        return torch.cat([u0[:, None], u[:, 1:]], 1)

    @torch.no_grad()
    def control_coefficients(
        self, u0: Tensor, target: Tensor, *, guidance: float = 0.0, energy_weight: float = 0.0,
        solver: Callable[[Tensor, Tensor], Tensor] | None = None, steps: int = 50,
        eta: float = 1.0, generator=None,
    ) -> Tensor:  # fmt: skip
        """Control: coefficients of (u, f, u0, uT) from p(u, f | u0, uT = target), each x0
        prediction moved by x0 <- x0 - guidance sigma(t)^2 grad_x0 J(x0), J the control objective
        of the decoded final state and forcing. As in WDNO the gradient goes through the inverse
        wavelet transform only, not through the network; the weight sigma(t)^2 fades it out as
        the noise vanishes (WDNO scales its eps-space step by the schedule's beta_t).

        ``solver``: None (WDNO's), J of the predicted final state u[:, -1]; or a differentiable
        map (u0, f) -> trajectory [B, nt, nx] (e.g. ``ControlProblem.solve``): J of the final
        state it produces under the predicted forcing, so that the tracking term's gradient
        reaches f itself rather than only the predicted u (which a small model couples loosely
        to its f)."""
        self._require_task("control")
        c, dtype = self.config, self.net.scale.dtype
        target = batch_of("target", target, (c.nx,), dtype)
        u0 = batch_of("u0", u0, (c.nx,), dtype)
        zeros = target.new_zeros(target.shape[0], c.nt, c.nx)
        known = self.encode(zeros, zeros, u0, target)

        def guide(x0: Tensor, t: Tensor) -> Tensor:
            with torch.enable_grad():
                y = x0.detach().requires_grad_(True)
                u, f = self.decode(y)
                final = u[:, -1] if solver is None else solver(u0, f)[:, -1].to(dtype)
                cost = control_objective(final, target, f, energy_weight).sum()
                (grad,) = torch.autograd.grad(cost, y)
            return x0 - guidance * expand_like(self.path.sigma(t) ** 2, x0).to(x0.dtype) * grad

        guide_fn = guide if guidance > 0 else None
        return self._sample(known, guide_fn, steps=steps, eta=eta, generator=generator)

    def control(self, u0: Tensor, target: Tensor, **options) -> tuple[Tensor, Tensor]:
        """(u, f) [B, nt, nx] steering u0 [B, nx] toward target [B, nx] (options: those of
        ``control_coefficients``); judge f with ``polydiff.pde.control.evaluate_control``."""
        u, f = self.decode(self.control_coefficients(u0, target, **options))
        u0 = torch.as_tensor(u0).to(u.dtype)
        return torch.cat([u0[:, None], u[:, 1:]], 1), f


__all__ = ["LOSS_WEIGHTS", "TASKS", "TRAIN_TIMES", "WDNO", "PhysicalSpace", "WDNOConfig", "WDNONet"]
