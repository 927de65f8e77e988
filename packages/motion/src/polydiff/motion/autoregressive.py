"""AAMDM-style autoregressive streaming (Li et al., "AAMDM: Accelerated Auto-regressive Motion
Diffusion Model", CVPR 2024): motion is generated one frame at a time, each frame by a few
denoising steps conditioned on the ``history`` frames before it, so frames can be shown as soon
as they exist (a game loop asks for the next pose).

The denoiser is MDM's transformer (`MotionDenoiser`) over the sequence ``[history..., x_t]``:
clean past frames with a "valid" flag (missing frames at the start of a stream are zeros with
the flag off) and the noisy next frame with a "target" flag; its output at the last position is
the x0 prediction of that frame. Each frame is sampled with the core's driver in ``steps`` DDIM
steps of the VP-cosine path: the first step from pure noise generates a rough frame, the
remaining ones polish it. Deviations from AAMDM, for this CPU budget: both stages are the same
x0 denoiser (AAMDM generates with a DD-GAN and polishes with a second diffusion model) and the
diffusion runs on the normalised 263-d features, not in a learned 64-d latent.

Training windows come from `MotionDataset`; each example is one frame of a window with the
frames before it (so histories shorter than ``history`` occur at window starts); the history
gets small Gaussian noise (``history_noise``) so the model tolerates its own imperfect frames,
and the geometric losses of MDM apply to the (last history frame, new frame) transition.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from polydiff.core import CFG, register_method, sample
from polydiff.motion.features import FeatureLayout
from polydiff.motion.mdm import MDMConfig, MotionDenoiser, MotionDiffusion, load_kind


@dataclass
class StreamConfig(MDMConfig):
    history: int = 10  # past frames the denoiser sees
    steps: int = 3  # DDIM steps per frame (one generating, the rest polishing)
    history_noise: float = 0.05  # std of the training noise on the history (normalised units)
    n_layers: int = 2
    dropout: float = 0.0


@register_method
class MotionStreamer(MotionDiffusion):
    """Frame-by-frame motion: `stream` yields frames, `sample` collects ``frames`` of them
    (the `MotionDiffusion` interface, so the CLI's generate and evaluate take it)."""

    domain, name, config_class = "motion", "autoregressive", StreamConfig
    default_guidance = 1.0  # CFG scale when none is given (chosen on validation)

    def build_net(self) -> nn.Module:
        dim = FeatureLayout(self.config.n_joints).dim
        return MotionDenoiser(self.config, in_dim=dim + 2, out_dim=dim)

    def _inputs(self, history: Tensor, valid: Tensor, x_t: Tensor) -> Tensor:
        """The denoiser's sequence ``[B, history + 1, D + 2]`` (features, valid, target)."""
        b, h = valid.shape
        flags = torch.zeros(b, h + 1, 2, dtype=x_t.dtype, device=x_t.device)
        flags[:, :h, 0] = valid.to(x_t.dtype)
        flags[:, h, 1] = 1.0
        frames = torch.cat([history * valid[..., None].to(x_t.dtype), x_t], 1)
        return torch.cat([frames, flags], -1)

    def predict(
        self, net: nn.Module, history: Tensor, valid: Tensor, x_t: Tensor, t: Tensor, action
    ) -> Tensor:
        """x0 of the next frame ``[B, 1, D]`` from its noisy version and the history."""
        return net(self._inputs(history, valid, x_t), t, action)[:, -1:]

    def _examples(self, windows: Tensor, generator: torch.Generator | None):
        """One target frame per window, with its (possibly truncated) history."""
        b, frames, _ = windows.shape
        h = self.config.history
        target = torch.randint(0, frames, (b,), generator=generator, device=windows.device)
        offsets = torch.arange(-h, 1, device=windows.device)
        index = target[:, None] + offsets  # [B, h + 1]
        valid = index >= 0
        picked = windows[torch.arange(b, device=windows.device)[:, None], index.clamp_min(0)]
        return picked[:, :h], valid[:, :h], picked[:, h:]

    def loss_fn(
        self, net: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """x0 MSE of the next frame plus MDM's geometric losses on the last transition."""
        c = self.config
        history, valid, x0 = self._examples(batch["x"], generator)
        action, b = batch["action"], x0.shape[0]
        drop = torch.rand(b, generator=generator, device=x0.device) < c.cond_drop
        action = torch.where(drop, torch.full_like(action, c.n_actions), action)
        jitter = torch.randn(history.shape, generator=generator, device=x0.device)
        noisy_history = history + c.history_noise * jitter.to(x0)
        t = self.path.sample_t(b, generator=generator, device=x0.device).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x0_hat = self.predict(
            net, noisy_history, valid, self.path.marginal(x0, t, noise), t, action
        )
        losses = {"simple": (x0_hat - x0).square().mean()}
        # the transition from the last history frame (a lone first frame: itself)
        before = torch.where(valid[:, -1:, None], history[:, -1:], x0)
        losses |= self.geometric_losses(
            net, torch.cat([before, x0_hat], 1), torch.cat([before, x0], 1)
        )
        losses["loss"] = self.weighted_loss(losses)
        return losses

    def sampling_steps(self, steps: int | None) -> int:
        """Denoising steps per frame: the config's when None."""
        return self.config.steps if steps is None else steps

    @torch.no_grad()
    def stream(
        self,
        actions: Sequence[str | int] | Tensor,
        *,
        steps: int | None = None,
        solver: str = "ddim",
        guidance: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[Tensor]:
        """Endless normalised frames ``[B, 1, D]``, one per ``next()``, each from
        ``steps`` denoiser calls (twice the batch with classifier-free guidance; ``guidance``
        None: ``default_guidance``)."""
        guidance = self.default_guidance if guidance is None else guidance
        labels = self.action_labels(actions)
        self.net.eval()
        c, b = self.config, len(labels)
        history = torch.zeros(b, c.history, self.layout.dim, device=self.device)
        valid = torch.zeros(b, c.history, dtype=torch.bool, device=self.device)
        null = torch.full_like(labels, c.n_actions)
        cfg = [CFG(guidance, uncond=null)] if guidance != 1.0 else []
        while True:

            def denoiser(x, t, action, history=history, valid=valid):
                n = len(x) // b  # CFG stacks the batch
                return self.predict(
                    self.net, history.repeat(n, 1, 1), valid.repeat(n, 1), x, t, action
                )

            x_init = torch.randn((b, 1, self.layout.dim), generator=generator).to(self.device)
            frame = sample(
                denoiser,
                x_init,
                path=self.path,
                solver=solver,
                steps=self.sampling_steps(steps),
                prediction="x0",
                cond=labels,
                guidance=cfg,
                generator=generator,
            )
            history = torch.cat([history[:, 1:], frame], 1)
            valid = torch.cat([valid[:, 1:], torch.ones_like(valid[:, :1])], 1)
            yield frame

    @torch.no_grad()
    def sample(
        self,
        actions: Sequence[str | int] | Tensor,
        *,
        steps: int | None = None,
        solver: str = "ddim",
        guidance: float | None = None,
        frames: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Denormalised features ``[B, frames, D]`` streamed frame by frame."""
        frames = frames or self.config.frames
        stream = self.stream(
            actions, steps=steps, solver=solver, guidance=guidance, generator=generator
        )
        return self.denormalize(torch.cat([next(stream) for _ in range(frames)], 1))


SHIPPED = "autoregressive-procedural"  # the checkpoint under polydiff/motion/checkpoints/


def load_streamer(folder: str | Path | None = None) -> MotionStreamer:
    """A saved streamer; None: the shipped checkpoint. Anything else is an InputError."""
    return load_kind(folder, SHIPPED, MotionStreamer, "an autoregressive streamer")


__all__ = ["MotionStreamer", "StreamConfig", "load_streamer"]
