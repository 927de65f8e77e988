"""What every policy method shares: sizes and normalizers in its config, training windows as
tensors, the receding-horizon ``act`` the rollout evaluator calls, and training on the core's
`fit` (checkpoints, resume)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.core.method import Config, Method
from polydiff.motion.policy.data import Normalizer, OfflineData, SequenceWindows

__all__ = [
    "CHECKPOINTS",
    "METHODS",
    "PolicyConfig",
    "PolicyMethod",
    "load_policy",
    "make_policy",
    "train_policy",
]

#: Shipped trained policies, one folder each (``polydiff policy rollout policy=null``).
CHECKPOINTS = Path(__file__).parent / "checkpoints"
#: Short names of the trainable policy methods -> their registered method names.
METHODS = {
    "diffusion": "diffusion_policy",
    "streaming": "streaming_policy",
    "flow": "flow_policy",
    "bc": "bc_mlp",
}


@dataclasses.dataclass
class PolicyConfig(Config):
    """Sizes and horizons: actions for ``horizon`` (H) steps are predicted from the last
    ``n_obs_steps`` (To) observations; actions To - 1 .. To - 2 + Ta (``n_action_steps``) are
    executed before the next prediction (receding horizon, Chi et al. 2023)."""

    obs_dim: int = 0
    act_dim: int = 0
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    env_id: str | None = None
    obs_normalizer: dict | None = None
    action_normalizer: dict | None = None


def check_horizons(c: PolicyConfig) -> None:
    """InputError naming the option when sizes or horizons cannot work together."""
    for option in ("obs_dim", "act_dim", "horizon", "n_obs_steps", "n_action_steps"):
        value = getattr(c, option)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{option} must be a positive integer, got {value!r}")
    if c.n_obs_steps - 1 + c.n_action_steps > c.horizon:
        raise InputError(
            f"horizon: {c.horizon} is shorter than n_obs_steps - 1 + n_action_steps "
            f"= {c.n_obs_steps - 1 + c.n_action_steps}"
        )


class PolicyMethod(Method):
    """Base of the policy methods: ``predict(obs)`` maps normalized observations (B, To, obs)
    to normalized actions (B, H, act); ``act`` wraps it for the rollout evaluator."""

    domain = "motion.policy"  # load_method imports polydiff.motion.policy.methods by this name

    def __init__(self, config: PolicyConfig, net=None):
        check_horizons(config)
        super().__init__(config, net)
        self.network_calls = 0
        self.obs_norm = self._normalizer(config.obs_normalizer, config.obs_dim)
        self.action_norm = self._normalizer(config.action_normalizer, config.act_dim)

    @staticmethod
    def _normalizer(d: dict | None, dim: int) -> Normalizer:
        if d is None:
            return Normalizer("limits", np.ones(dim), np.zeros(dim))
        return Normalizer.from_dict(d, "config.json")

    @property
    def n_obs_steps(self) -> int:
        return self.config.n_obs_steps

    @classmethod
    def for_data(cls, data: OfflineData, normalizer: str = "limits", **options: Any):
        """The method sized for ``data``, with normalizers fitted to it (``options``: config
        fields)."""
        config = cls.config_class(
            obs_dim=data.obs_dim,
            act_dim=data.act_dim,
            env_id=data.env_id,
            obs_normalizer=Normalizer.fit(normalizer, data.observations).to_dict(),
            action_normalizer=Normalizer.fit(normalizer, data.actions).to_dict(),
            **options,
        )
        return cls(config)

    def windows(self, data: OfflineData) -> SequenceWindows:
        c = self.config
        return SequenceWindows(data, c.horizon, c.n_obs_steps, c.n_action_steps)

    def batch(self, windows: SequenceWindows, indices) -> dict[str, Tensor]:
        """Normalized training tensors: ``obs`` (B, To, obs), ``action`` (B, H, act)."""
        raw = windows.batch(indices)
        obs = self.obs_norm.normalize(raw["observations"][:, : self.config.n_obs_steps])
        action = self.action_norm.normalize(raw["actions"])
        return {
            "obs": torch.as_tensor(obs, dtype=torch.float32, device=self.device),
            "action": torch.as_tensor(action, dtype=torch.float32, device=self.device),
        }

    def predict(self, obs: Tensor, **options: Any) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: np.ndarray, **options: Any) -> np.ndarray:
        """(B, To, obs) raw observations -> (B, Ta, act) raw actions to execute now."""
        c = self.config
        if obs.ndim != 3 or obs.shape[1:] != (c.n_obs_steps, c.obs_dim):
            raise InputError(
                f"observations: expected (batch, {c.n_obs_steps}, {c.obs_dim}), got {obs.shape}"
            )
        x = torch.as_tensor(self.obs_norm.normalize(obs), dtype=torch.float32, device=self.device)
        actions = self.action_norm.unnormalize(self.predict(x, **options)).cpu().numpy()
        return actions[:, c.n_obs_steps - 1 : c.n_obs_steps - 1 + c.n_action_steps]


def train_policy(
    method: PolicyMethod,
    data: OfflineData,
    run_dir: str | Path,
    *,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    ema_decay: float | None = 0.995,
    seed: int = 0,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """Train (or resume) ``method`` on windows of ``data`` in ``run_dir`` with the core's
    `DiffusionModule` (AdamW, gradient clipping, EMA with warm-up, so short runs forget the
    initial weights) and `fit` (periodic checkpoints; rerunning the same call in the same
    folder resumes from ``run_dir/checkpoints/last.ckpt``). The EMA weights are copied into
    ``method.net`` and saved with the config to ``run_dir/model``. Returns ``steps``,
    ``losses`` (the training loss logged every ``log_every`` steps, a ``fit_kwargs``: 50, or
    fewer in runs under 1000 steps), ``final_loss`` (their mean over the last 5% of the steps)
    and ``folder``. ``fit_kwargs`` go to ``polydiff.core.train.fit``."""
    # Lightning is imported here, so that importing the policies stays light
    from polydiff.core.train import DiffusionModule, ResumableLoader, fit, logged_losses

    windows = method.windows(data)
    method.net.train()  # Lightning keeps the mode it finds (a trained policy is in eval mode)
    module = DiffusionModule(
        method.net, method.loss_fn, lr=lr, weight_decay=1e-6, ema_decay=ema_decay,
        ema_warmup=True,
    )  # fmt: skip
    loader = ResumableLoader(
        range(len(windows)), batch_size=min(batch_size, len(windows)), seed=seed,
        collate_fn=lambda indices: method.batch(windows, np.asarray(indices)),
    )  # fmt: skip
    fit_kwargs.setdefault("progress_bar", False)
    fit_kwargs.setdefault("checkpoint_every", 500)
    fit_kwargs.setdefault("log_every", min(50, max(1, steps // 20)))  # a short run logs too
    trainer = fit(module, loader, run_dir, max_steps=steps, seed=seed, **fit_kwargs)
    method.net.load_state_dict(module.eval_net.state_dict())
    method.net.eval()
    folder = method.save(Path(run_dir) / "model")
    losses = logged_losses(run_dir)
    tail = losses[-max(1, len(losses) // 20) :]
    return {"steps": trainer.global_step, "losses": losses, "final_loss": float(np.mean(tail)),
            "log_every": fit_kwargs["log_every"], "folder": folder}  # fmt: skip


def make_policy(method: str, data: OfflineData, **options: Any) -> PolicyMethod:
    """A policy method by short name (``METHODS``) sized for ``data``; ``options`` are config
    fields (an unknown one is an InputError naming it)."""
    from polydiff.core.method import method_class

    if method not in METHODS:
        raise InputError(f"method: unknown method {method!r} (one of {', '.join(METHODS)})")
    cls = method_class(PolicyMethod.domain, METHODS[method])
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    for key in options:
        if key not in fields:
            raise InputError(f"{method}.{key}: not an option of {cls.__name__}")
    return cls.for_data(data, **options)


def load_policy(folder: str | Path) -> PolicyMethod:
    """A policy saved by ``method.save(folder)``; anything else is an InputError naming it."""
    from polydiff.core.method import load_method

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (a saved policy is a folder)")
    try:
        method = load_method(folder, domain=PolicyMethod.domain)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise InputError(str(err).strip("'\"")) from None
    return method
