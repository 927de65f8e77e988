"""StoRM: stochastic regeneration, a predictive network followed by diffusion from its estimate.

Lemercier, Richter, Welker, Gerkmann (2023), "StoRM: A Diffusion-based Stochastic Regeneration
Model for Speech Enhancement and Dereverberation", IEEE/ACM TASLP 31. A predictive NCSN++ D (no
time input) maps the noisy spectrogram y to an estimate D(y); the OUVE SDE of SGMSE+ then drifts
toward D(y) instead of y (Sec. III-B):

    dx = theta (D(y) - x) dt + g(t) dw,
    x_t ~ CN(e^{-theta t} x0 + (1 - e^{-theta t}) D(y), sigma(t)^2),

and the score network sees [x_t, y, D(y)] (6 real channels). Training minimises (Eq. 12)

    a 0.5 |D(y) - x0|^2 + (1 - a) 0.5 |sigma s + z|^2,   a = 0.5,

(our option ``linear_weight`` w adds w 0.5 |c^-1(D(y)) - c^-1(x0)|^2 to D's term: the error in
the uncompressed STFT domain, which weighs loud bins as SI-SDR and PESQ do),

and enhancement computes D(y), draws x_1 = D(y) + sigma(1) z and runs the SGMSE+ sampler for
fewer steps (the authors' default: 20 reverse-diffusion steps without corrector); ``t_start``
< 1 starts it later, at D(y) + sigma(t_start) z (our addition, see `sgmse.pc_sample`). The paper's
training modes (Sec. IV-C) are ``mode``:

- "joint": both networks with the loss above (gradients of the score term flow into D);
- "predictive": D alone, 0.5 |D(y) - x0|^2 (StoRM's "denoiser-only"; the predictive baseline);
- "frozen_predictive": the score network alone on a fixed, pre-trained D
  (StoRM's "regen-freeze-denoiser"; load D with `StoRM.load_predictor`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polydiff.core.method import register_method
from polydiff.core.paths import OUVE
from polydiff.speech.audio import PRESETS as SPEC_PRESETS
from polydiff.speech.audio import SpecConfig
from polydiff.speech.method import OUVEConfig, SpeechMethod
from polydiff.speech.nets import NCSNpp, NCSNppConfig, channels_to_spec, spec_to_channels
from polydiff.speech.sgmse import (
    check_net,
    complex_noise,
    net_config,
    net_preset,
    real_time,
    reverse_sample,
    sample_t,
    score_matching_loss,
    spec_from_preset,
    with_changes,
)

MODES = ("joint", "predictive", "frozen_predictive")


def predictor_config(name: str = "ncsnpp_m") -> NCSNppConfig:
    """A predictive-network config from an NCSN++ preset: no time input, y -> D(y)."""
    return net_preset(name, in_channels=2, conditional=False)


def score_config(name: str = "ncsnpp_m") -> NCSNppConfig:
    """A StoRM score-network config from an NCSN++ preset: input [x_t, y, D(y)]."""
    return net_preset(name, in_channels=6)


@dataclass(frozen=True)
class StoRMConfig(OUVEConfig):
    """StoRM settings (defaults: the paper's NCSN++M networks, 16 kHz, beta 0.33).

    predictor / score: the two NCSN++ configs (see `predictor_config`, `score_config`).
    theta, sigma_min, sigma_max, t_eps: OUVE SDE as SGMSE+. a: weight of the predictive loss.
    linear_weight: weight of D's error in the uncompressed (linear) STFT domain, added to its
    compressed-domain loss (0: the paper's loss). mode: training mode ("joint", "predictive",
    "frozen_predictive"). N, snr,
    corrector_steps: sampler defaults (20 steps, no corrector, as the authors recommend;
    N = 0 makes the predictive model alone the default). t_start: the time the reverse
    process starts from, x = D(y) + sigma(t_start) z (the paper: 1).
    """

    min_N: ClassVar[int] = 0  # N = 0: the predictive model alone as the default setting
    spec: SpecConfig = field(default_factory=lambda: SPEC_PRESETS["16k_storm"])
    N: int = 20
    corrector_steps: int = 0
    predictor: NCSNppConfig = field(default_factory=predictor_config)
    score: NCSNppConfig = field(default_factory=score_config)
    a: float = 0.5
    linear_weight: float = 0.0
    mode: str = "joint"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "predictor", net_config(self.predictor))
        object.__setattr__(self, "score", net_config(self.score))
        check_net(self.predictor, self.spec, 2, False, "StoRMConfig.predictor")
        check_net(self.score, self.spec, 6, True, "StoRMConfig.score")
        if self.mode not in MODES:
            raise ValueError(f"StoRMConfig: mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.a <= 1.0:
            raise ValueError(f"StoRMConfig: the loss weight a must be in [0, 1], got {self.a}")
        if not self.linear_weight >= 0.0:
            raise ValueError(f"StoRMConfig: linear_weight must be >= 0, got {self.linear_weight}")


def _sum_sq(err: Tensor) -> Tensor:
    """0.5 |err|^2 summed per example, mean over the batch."""
    return 0.5 * err.abs().square().reshape(err.shape[0], -1).sum(-1).mean()


def linear(S: Tensor, alpha: float, beta: float) -> Tensor:
    """The uncompressed STFT c^-1(S) = S (|S| / beta)^(1/alpha - 1) / beta, written without the
    angle so that its gradient stays finite at S = 0 (alpha <= 1)."""
    return S * (S.abs() / beta) ** (1.0 / alpha - 1.0) / beta


class StoRMNet(nn.Module):
    """StoRM's networks: the predictive NCSN++ D (weights ``predictor.*``), the score NCSN++
    (``score_net.*``) and the OUVE path; ``mode`` is the training mode of :meth:`loss`."""

    def __init__(self, cfg: StoRMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.predictor = NCSNpp(cfg.predictor)
        self.score_net = NCSNpp(cfg.score)
        self.path = OUVE(cfg.theta, cfg.sigma_min, cfg.sigma_max)
        self.set_mode(cfg.mode)

    def set_mode(self, mode: str) -> None:
        """Switch the training mode; "frozen_predictive" stops gradients into D."""
        if mode not in MODES:
            raise ValueError(f"StoRM: mode must be one of {MODES}, got {mode!r}")
        self.cfg = dataclasses.replace(self.cfg, mode=mode)
        self.predictor.requires_grad_(mode != "frozen_predictive")
        self.score_net.requires_grad_(mode != "predictive")

    def predict(self, y: Tensor) -> Tensor:
        """The predictive estimate D(y) of the clean compressed spectrogram (B, F, T)."""
        return channels_to_spec(self.predictor(spec_to_channels(y)).to(y.real.dtype))

    def forward(self, x_t: Tensor, y: Tensor, d: Tensor, t: Tensor) -> Tensor:
        """The score network's noise estimate from [x_t, y, D(y)] (score = -output / sigma)."""
        h = self.score_net(spec_to_channels(x_t, y, d), real_time(t, x_t))
        return channels_to_spec(h.to(x_t.real.dtype))  # autocast may return bf16/fp16

    def loss(
        self, x0: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """StoRM's loss for the current mode (Eq. 12); returns {"loss", "predictive"[, "score"]}."""
        mode = self.cfg.mode
        if mode == "frozen_predictive":
            with torch.no_grad():
                d = self.predict(y)
        else:
            d = self.predict(y)
        l_pred = _sum_sq(d - x0)
        parts = {}
        if self.cfg.linear_weight > 0:
            spec = self.cfg.spec
            l_lin = _sum_sq(linear(d, spec.alpha, spec.beta) - linear(x0, spec.alpha, spec.beta))
            l_pred = l_pred + self.cfg.linear_weight * l_lin
            parts["linear"] = l_lin.detach()
        if mode == "predictive":
            return {"loss": l_pred, "predictive": l_pred.detach(), **parts}
        t = sample_t(x0.shape[0], self.cfg.t_eps, x0, generator)
        z = complex_noise(x0, generator)
        x_t = self.path.marginal(x0, t, z, mu=d)
        l_score = score_matching_loss(self(x_t, y, d, t), z)
        a = self.cfg.a if mode == "joint" else 0.0
        loss = a * l_pred + (1 - a) * l_score
        return {"loss": loss, "predictive": l_pred.detach(), "score": l_score.detach(), **parts}


@register_method
class StoRM(SpeechMethod):
    """StoRM (Lemercier et al. 2023): predictive NCSN++ D, then OUVE diffusion from D(y)."""

    name, config_class = "storm", StoRMConfig

    def build_net(self) -> StoRMNet:
        return StoRMNet(self.config)

    def set_mode(self, mode: str) -> None:
        """Switch the training mode (config and network); "frozen_predictive" freezes D."""
        self.net.set_mode(mode)
        self.config = dataclasses.replace(self.config, mode=mode)

    @torch.no_grad()
    def sample(
        self, Y: Tensor, *, generator: torch.Generator | None = None, **options: Any
    ) -> Tensor:
        """Enhance compressed spectrograms Y (B, F, T): D(Y), then x = D(Y) + sigma(t_start) z
        and the sampler ("pc" or "ode") with mean D(Y). ``N=0`` returns D(Y) (the predictive
        model alone, 1 NFE); otherwise NFE = 1 + N (1 + corrector_steps) for "pc"."""
        o = self.options(**options)
        net = self.net
        d = net.predict(Y)
        if o.N == 0:
            return d

        def eps_fn(x: Tensor, t: Tensor) -> Tensor:
            return net(x, Y, d, t)

        return reverse_sample(eps_fn, d, net.path, self.config.t_eps, o, generator)

    def nfe(self, **options: Any) -> int:
        """1 (the predictive network) + the reverse process's evaluations."""
        return 1 + super().nfe(**options)

    def describe(self, **options: Any) -> str:
        name = super().describe(**options)
        return f"predictive ({name})" if self.options(**options).N == 0 else name

    def load_predictor(self, path: str | os.PathLike) -> StoRM:
        """Load D from a saved StoRM (e.g. a "predictive" run) before "frozen_predictive"
        training: the `predictor.*` weights of its model.safetensors."""
        from polydiff.core.io import load_safetensors

        path = Path(path)
        # the file name of polydiff.core.train.WEIGHTS_FILE (not imported: it loads Lightning)
        file = path / "model.safetensors" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file}: not found (the predictor of a saved StoRM)")
        state = {
            k[len("predictor.") :]: v
            for k, v in load_safetensors(file).items()
            if k.startswith("predictor.")
        }
        if not state:
            raise ValueError(f"{file}: no predictor.* weights (not an exported StoRM model)")
        try:
            self.net.predictor.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{file}: predictor weights do not fit this StoRM: {err}") from err
        return self

    @classmethod
    def from_presets(
        cls, spec: str | None = None, net: str = "micro", *, spec_changes: dict | None = None,
        net_changes: dict | None = None, predictor: str | os.PathLike | None = None,
        **fields: Any,
    ) -> StoRM:  # fmt: skip
        """StoRM from an STFT preset (None: 16k_storm) and an NCSN++ preset for both networks,
        each with field changes, and any other config ``fields`` (mode, a, theta, N, ...);
        ``predictor``: a saved StoRM whose D is loaded (needed by mode "frozen_predictive")."""
        if fields.get("mode") == "frozen_predictive" and predictor is None:
            raise ValueError(
                "StoRM: mode frozen_predictive trains the score network on a fixed D: give "
                "storm.predictor=<folder of a saved predictive StoRM>"
            )
        config = StoRMConfig(
            spec=spec_from_preset(spec or "16k_storm", spec_changes),
            predictor=with_changes(predictor_config(net), net_changes),
            score=with_changes(score_config(net), net_changes),
            **fields,
        )
        method = cls(config)
        return method if predictor is None else method.load_predictor(predictor)


__all__ = [
    "MODES",
    "StoRM",
    "StoRMConfig",
    "StoRMNet",
    "linear",
    "predictor_config",
    "score_config",
]
