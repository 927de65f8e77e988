"""The standard motion diffusion model (MDM: Tevet et al., "Human Motion Diffusion Model",
ICLR 2023): a transformer denoiser that predicts the clean motion x0 from a noisy window of
normalised 263-d features, trained with the simple loss plus geometric losses on joint positions,
joint velocities and foot contact, conditioned on an action label with classifier-free guidance
(the label is dropped to a null label during training).

Here the denoiser's blocks are the core's adaLN-Zero transformer blocks (time and action
embeddings summed into the condition) with rotary frame positions; positions for the geometric
losses come from the exact feature inverse (`features_to_positions`), so they are differentiable.
Sampling goes through the core's driver with any of its solvers (x0 prediction) and `CFG`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polydiff.core import CFG, Config, Method, VPCosine, register_method, sample
from polydiff.core.errors import InputError
from polydiff.core.nn import TimeMLP, TransformerBlock, rotary_cos_sin, sinusoidal_embedding
from polydiff.motion.data import ACTIONS, MotionDataset, Normalizer, action_index
from polydiff.motion.features import FeatureLayout, features_to_positions
from polydiff.motion.skeleton import FOOT_JOINTS


@dataclass
class MDMConfig(Config):
    frames: int = 40  # feature frames per window (2 s at 20 fps)
    n_joints: int = 22
    n_actions: int = len(ACTIONS)
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    cond_drop: float = 0.1  # probability of training with the null label (for CFG)
    position_weight: float = 1.0
    velocity_weight: float = 1.0
    foot_weight: float = 1.0


class MotionDenoiser(nn.Module):
    """x0 prediction ``[B, T, D]`` from noisy features ``[B, T, D]``, times ``[B]`` and action
    indices ``[B]`` (``n_actions`` is the null label). Holds the feature normaliser as buffers,
    so it is saved with the weights. ``in_dim`` / ``out_dim`` (default: the feature size) and a
    ``latent_dim`` latent ``z [B, latent_dim]`` summed into the condition make the same trunk
    serve as EMDM's generator and discriminator (`polydiff.motion.emdm`)."""

    def __init__(
        self,
        config: MDMConfig,
        *,
        in_dim: int | None = None,
        out_dim: int | None = None,
        latent_dim: int = 0,
    ) -> None:
        super().__init__()
        dim, d = FeatureLayout(config.n_joints).dim, config.d_model
        self.d_model, self.n_heads = d, config.n_heads
        self.inp = nn.Linear(in_dim or dim, d)
        self.time = TimeMLP(d, d)
        self.action = nn.Embedding(config.n_actions + 1, d)
        self.latent = nn.Linear(latent_dim, d) if latent_dim else None
        self.blocks = nn.ModuleList(
            TransformerBlock(d, config.n_heads, config.mlp_ratio, config.dropout, cond_dim=d)
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_modulation = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, out_dim or dim)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: Tensor, t: Tensor, action: Tensor, z: Tensor | None = None) -> Tensor:
        t = t.to(x.dtype).expand(x.shape[0])
        c = self.time(sinusoidal_embedding(t, self.d_model, scale=1000.0)) + self.action(action)
        if self.latent is not None:
            c = c + self.latent(z)
        positions = torch.arange(x.shape[1], device=x.device)
        cos, sin = rotary_cos_sin(positions, self.d_model // self.n_heads)
        h = self.inp(x)
        for block in self.blocks:
            h, _ = block(h, c, cos=cos, sin=sin)
        shift, scale = self.final_modulation(F.silu(c)).chunk(2, -1)
        return self.out(self.norm(h) * (1 + scale[:, None]) + shift[:, None])


@register_method
class MotionDiffusion(Method):
    """MDM on the 263-d features: ``sample(actions)`` returns features, `positions` joints."""

    domain, name, config_class = "motion", "mdm", MDMConfig
    default_guidance = 2.5  # CFG scale when none is given (MDM paper)

    def __init__(self, config: MDMConfig, net: nn.Module | None = None) -> None:
        super().__init__(config, net)
        self.path = VPCosine()
        self.layout = FeatureLayout(config.n_joints)

    def build_net(self) -> nn.Module:
        return MotionDenoiser(self.config)

    def set_normalizer(self, normalizer: Normalizer) -> None:
        self.net.mean.copy_(normalizer.mean)
        self.net.std.copy_(normalizer.std)

    def denormalize(self, x: Tensor, net: nn.Module | None = None) -> Tensor:
        net = net if net is not None else self.net
        return x * net.std.to(x) + net.mean.to(x)

    def geometric_losses(self, net: nn.Module, x0_hat: Tensor, x0: Tensor) -> dict[str, Tensor]:
        """MDM's position, velocity and foot-contact losses (Tevet et al. 2023, Eqs. 2-4) on
        joints recovered from denormalised features: the foot term penalises the predicted
        foot joints' displacement where the data mark a contact."""
        predicted = features_to_positions(self.denormalize(x0_hat, net))
        features = self.denormalize(x0, net)
        target = features_to_positions(features)
        velocity_hat, velocity = predicted.diff(dim=-3), target.diff(dim=-3)
        contact = features[..., self.layout.contacts][..., :-1, :]  # of each transition
        feet = velocity_hat[..., list(FOOT_JOINTS), :]
        return {
            "position": (predicted - target).square().mean(),
            "velocity": (velocity_hat - velocity).square().mean(),
            "foot": (feet * contact.unsqueeze(-1)).square().mean(),
        }

    def loss_fn(
        self, net: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Simple x0 loss plus the weighted geometric losses; ``batch``: normalised features
        ``x [B, T, D]`` and ``action [B]``."""
        c = self.config
        x0, action = batch["x"], batch["action"]
        b = x0.shape[0]
        drop = torch.rand(b, generator=generator, device=x0.device) < c.cond_drop
        action = torch.where(drop, torch.full_like(action, c.n_actions), action)
        t = self.path.sample_t(b, generator=generator, device=x0.device).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x0_hat = net(self.path.marginal(x0, t, noise), t, action)
        losses = {"simple": (x0_hat - x0).square().mean()}
        losses |= self.geometric_losses(net, x0_hat, x0)
        losses["loss"] = self.weighted_loss(losses)
        return losses

    def weighted_loss(self, losses: dict[str, Tensor], simple_weight: float = 1.0) -> Tensor:
        """The x0 loss and the geometric losses weighted as the config says."""
        c = self.config
        return (
            simple_weight * losses["simple"]
            + c.position_weight * losses["position"]
            + c.velocity_weight * losses["velocity"]
            + c.foot_weight * losses["foot"]
        )

    def action_labels(self, actions: Sequence[str | int] | Tensor) -> Tensor:
        """Action indices ``[B]`` from names or indices; unknown ones are InputErrors."""
        if isinstance(actions, Tensor):
            labels = actions.long()
        else:
            labels = torch.tensor(
                [action_index(a) if isinstance(a, str) else int(a) for a in actions]
            )
        if ((labels < 0) | (labels >= self.config.n_actions)).any():
            raise InputError(f"action: indices must lie in [0, {self.config.n_actions})")
        return labels.to(self.device)

    def sampling_steps(self, steps: int | None) -> int:
        """The network steps of ``sample(steps=steps)``: 50 when None."""
        return 50 if steps is None else steps

    @torch.no_grad()
    def sample(
        self,
        actions: Sequence[str | int] | Tensor,
        *,
        steps: int = 50,
        solver: str = "ddim",
        guidance: float | None = None,
        frames: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Denormalised features ``[B, frames, D]``, one clip per action; ``guidance`` is the
        CFG scale (1 = the conditional model alone; None: ``default_guidance``)."""
        guidance = self.default_guidance if guidance is None else guidance
        labels = self.action_labels(actions)
        self.net.eval()
        shape = (len(labels), frames or self.config.frames, self.layout.dim)
        x_init = torch.randn(shape, generator=generator).to(self.device)
        null = torch.full_like(labels, self.config.n_actions)
        cfg = [CFG(guidance, uncond=null)] if guidance != 1.0 else []
        x0 = sample(
            self.net,
            x_init,
            path=self.path,
            solver=solver,
            steps=steps,
            prediction="x0",
            cond=labels,
            guidance=cfg,
            generator=generator,
        )
        return self.denormalize(x0)

    @staticmethod
    def positions(features: Tensor) -> Tensor:
        """Joint positions ``[B, T, J, 3]`` of sampled features."""
        return features_to_positions(features.double())


SHIPPED = "mdm-procedural"  # the checkpoint under polydiff/motion/checkpoints/


def load_mdm(folder: str | Path | None = None) -> MotionDiffusion:
    """A saved MDM (`train_mdm`'s export, `method.save`); None: the shipped checkpoint. A folder
    that holds no motion diffusion model is an InputError naming it."""
    from polydiff.core import load_method

    if folder is None:
        folder = Path(__file__).parent / "checkpoints" / SHIPPED
    try:
        method = load_method(folder, domain="motion")
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise InputError(f"{folder}: not a motion model ({str(error).strip(chr(39))})") from None
    if not isinstance(method, MotionDiffusion):
        raise InputError(f"{folder}: a {type(method).__name__}, not a motion diffusion model")
    return method


def load_kind(folder: str | Path | None, shipped: str, kind: type, what: str) -> Any:
    """A saved model of class ``kind`` (`load_mdm`); None: the shipped checkpoint ``shipped``.
    Another kind of model is an InputError saying it is not ``what``."""
    folder = Path(__file__).parent / "checkpoints" / shipped if folder is None else folder
    method = load_mdm(folder)
    if not isinstance(method, kind):
        raise InputError(f"{folder}: a {type(method).__name__}, not {what}")
    return method


def train_mdm(
    method: MotionDiffusion,
    dataset: MotionDataset,
    run_dir: str | Path,
    *,
    max_steps: int,
    batch_size: int = 32,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    ema_decay: float = 0.999,
    ema_warmup: bool = True,
    warmup_steps: int = 0,
    lr_scales: dict[str, float] | None = None,
    seed: int = 0,
    **fit_kwargs: Any,
) -> Path:
    """Train (or resume) ``method`` on ``dataset`` with the core's `DiffusionModule` (AdamW,
    gradient clipping, EMA) and `fit` in ``run_dir``; the dataset's normaliser goes into the
    network and the EMA weights are exported to ``run_dir/model`` (returned), with
    ``training.json`` (steps, the last logged training loss). ``lr_scales``: learning-rate
    multipliers by parameter-name prefix (EMDM's discriminator: ``{"discriminator.": 6.25}``)."""
    from polydiff.core.io import atomic_write_json
    from polydiff.core.train import DiffusionModule, ResumableLoader, fit

    method.set_normalizer(dataset.normalizer)
    module = DiffusionModule(
        method.net,
        method.loss_fn,
        lr=lr,
        betas=betas,
        ema_decay=ema_decay,
        ema_warmup=ema_warmup,  # short CPU runs: the EMA must not keep the initial weights
        warmup_steps=warmup_steps,
        lr_scales=lr_scales,
    )
    loader = ResumableLoader(dataset, batch_size=min(batch_size, len(dataset)), seed=seed)
    fit_kwargs.setdefault("progress_bar", False)
    trainer = fit(module, loader, run_dir, max_steps=max_steps, seed=seed, **fit_kwargs)
    folder = method.save(Path(run_dir) / "model", module)
    loss = trainer.callback_metrics.get("train/loss")
    info = {"steps": trainer.global_step, "final_loss": None if loss is None else float(loss)}
    atomic_write_json(folder / "training.json", info)
    return folder


def generate_motions(
    method: MotionDiffusion,
    actions: Sequence[str],
    *,
    steps: int | None = None,
    solver: str = "ddim",
    guidance: float | None = None,
    frames: int | None = None,
    seed: int = 0,
) -> tuple[Tensor, float]:
    """Sample one clip per action: joint positions ``[B, T, J, 3]`` (float64, canonical frame)
    and the wall-clock seconds the sampling took; ``steps`` None: the method's default (50 for
    MDM, its training's steps for EMDM); ``guidance`` None: the method's own default CFG scale
    (MDM 2.5; EMDM and the streamer 1, chosen on validation)."""
    labels = method.action_labels(list(actions))  # unknown labels fail before any work
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    options = {"solver": solver, "guidance": guidance, "frames": frames, "generator": generator}
    features = method.sample(labels, steps=method.sampling_steps(steps), **options)
    return method.positions(features.cpu()), time.perf_counter() - start


__all__ = [
    "MDMConfig",
    "MotionDenoiser",
    "MotionDiffusion",
    "generate_motions",
    "load_kind",
    "load_mdm",
    "train_mdm",
]
