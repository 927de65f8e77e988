"""StoRM: stochastic regeneration, a predictive network followed by diffusion from its estimate.

Lemercier, Richter, Welker, Gerkmann (2023), "StoRM: A Diffusion-based Stochastic Regeneration
Model for Speech Enhancement and Dereverberation", IEEE/ACM TASLP 31. A predictive NCSN++ D (no
time input) maps the noisy spectrogram y to an estimate D(y); the OUVE SDE of SGMSE+ then drifts
toward D(y) instead of y (Sec. III-B):

    dx = theta (D(y) - x) dt + g(t) dw,
    x_t ~ CN(e^{-theta t} x0 + (1 - e^{-theta t}) D(y), sigma(t)^2),

and the score network sees [x_t, y, D(y)] (6 real channels). Training minimises (Eq. 12)

    a 0.5 |D(y) - x0|^2 + (1 - a) 0.5 |sigma s + z|^2,   a = 0.5,

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polydiff.core.paths import OUVE
from polydiff.speech.audio import PRESETS as SPEC_PRESETS
from polydiff.speech.audio import SpecConfig
from polydiff.speech.enhance import enhance_audio, enhance_folder
from polydiff.speech.nets import PRESETS as NET_PRESETS
from polydiff.speech.nets import NCSNpp, NCSNppConfig, channels_to_spec, spec_to_channels
from polydiff.speech.sgmse import (
    _check_sampler,
    check_net,
    check_t_start,
    complex_noise,
    net_config,
    real_time,
    reverse_sample,
    sample_t,
    score_matching_loss,
    spec_config,
)

MODES = ("joint", "predictive", "frozen_predictive")


def predictor_config(name: str = "ncsnpp_m") -> NCSNppConfig:
    """A predictive-network config from an NCSN++ preset: no time input, y -> D(y)."""
    return dataclasses.replace(NET_PRESETS[name], in_channels=2, conditional=False)


def score_config(name: str = "ncsnpp_m") -> NCSNppConfig:
    """A StoRM score-network config from an NCSN++ preset: input [x_t, y, D(y)]."""
    return dataclasses.replace(NET_PRESETS[name], in_channels=6)


@dataclass(frozen=True)
class StoRMConfig:
    """StoRM settings (defaults: the paper's NCSN++M networks, 16 kHz, beta 0.33).

    predictor / score: the two NCSN++ configs (see `predictor_config`, `score_config`).
    theta, sigma_min, sigma_max, t_eps: OUVE SDE as SGMSE+. a: weight of the predictive loss.
    mode: training mode ("joint", "predictive", "frozen_predictive"). N, snr,
    corrector_steps: sampler defaults (20 steps, no corrector, as the authors recommend;
    N = 0 makes the predictive model alone the default). t_start: the time the reverse
    process starts from, x = D(y) + sigma(t_start) z (the paper: 1).
    """

    spec: SpecConfig = field(default_factory=lambda: SPEC_PRESETS["16k_storm"])
    predictor: NCSNppConfig = field(default_factory=predictor_config)
    score: NCSNppConfig = field(default_factory=score_config)
    theta: float = 1.5
    sigma_min: float = 0.05
    sigma_max: float = 0.5
    t_eps: float = 0.03
    a: float = 0.5
    mode: str = "joint"
    N: int = 20
    snr: float = 0.5
    corrector_steps: int = 0
    t_start: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", spec_config(self.spec))
        object.__setattr__(self, "predictor", net_config(self.predictor))
        object.__setattr__(self, "score", net_config(self.score))
        check_net(self.predictor, self.spec, 2, False, "StoRMConfig.predictor")
        check_net(self.score, self.spec, 6, True, "StoRMConfig.score")
        if self.mode not in MODES:
            raise ValueError(f"StoRMConfig: mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.a <= 1.0:
            raise ValueError(f"StoRMConfig: the loss weight a must be in [0, 1], got {self.a}")
        # N = 0 is allowed: the predictive model alone as the default sampler setting
        _check_sampler(self.t_eps, self.N, self.snr, self.corrector_steps, "StoRMConfig", 0)
        check_t_start(self.t_start, self.t_eps, "StoRMConfig")

    def to_dict(self) -> dict:
        return {"method": "storm", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> StoRMConfig:
        return cls(**{k: v for k, v in d.items() if k != "method"})


def _sum_sq(err: Tensor) -> Tensor:
    """0.5 |err|^2 summed per example, mean over the batch."""
    return 0.5 * err.abs().square().reshape(err.shape[0], -1).sum(-1).mean()


class StoRM(nn.Module):
    """StoRM (Lemercier et al. 2023): predictive NCSN++ D, then OUVE diffusion from D(y)."""

    def __init__(self, cfg: StoRMConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else StoRMConfig()
        self.predictor = NCSNpp(self.cfg.predictor)
        self.score_net = NCSNpp(self.cfg.score)
        self.path = OUVE(self.cfg.theta, self.cfg.sigma_min, self.cfg.sigma_max)
        self.set_mode(self.cfg.mode)

    @property
    def spec(self) -> SpecConfig:
        return self.cfg.spec

    @property
    def frame_multiple(self) -> int:
        return self.cfg.spec.frame_multiple

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
        if mode == "predictive":
            return {"loss": l_pred, "predictive": l_pred.detach()}
        t = sample_t(x0.shape[0], self.cfg.t_eps, x0, generator)
        z = complex_noise(x0, generator)
        x_t = self.path.marginal(x0, t, z, mu=d)
        l_score = score_matching_loss(self(x_t, y, d, t), z)
        a = self.cfg.a if mode == "joint" else 0.0
        loss = a * l_pred + (1 - a) * l_score
        return {"loss": loss, "predictive": l_pred.detach(), "score": l_score.detach()}

    @torch.no_grad()
    def enhance_spec(
        self,
        Y: Tensor,
        *,
        sampler: str = "pc",
        N: int | None = None,
        snr: float | None = None,
        corrector_steps: int | None = None,
        t_start: float | None = None,
        ode_solver: str = "dpmpp_2m",
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Enhance compressed spectrograms Y (B, F, T): D(Y), then x = D(Y) + sigma(t_start) z
        and the sampler ("pc" or "ode") with mean D(Y). ``N=0`` returns D(Y) (the predictive
        model alone, 1 NFE); otherwise NFE = 1 + N (1 + corrector_steps) for "pc"."""
        cfg = self.cfg
        N = cfg.N if N is None else N
        d = self.predict(Y)
        if N == 0:
            return d

        def eps_fn(x: Tensor, t: Tensor) -> Tensor:
            return self(x, Y, d, t)

        return reverse_sample(
            eps_fn, d, self.path, cfg, sampler=sampler, N=N, snr=snr,
            corrector_steps=corrector_steps, t_start=t_start, ode_solver=ode_solver,
            generator=generator,
        )  # fmt: skip

    def enhance(
        self, audio: np.ndarray | Tensor, sample_rate: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Enhance a waveform (T,) or (C, T) of any length; see `polydiff.speech.enhance.
        enhance_audio` (seed, chunking) and `enhance_spec` (sampler, N, corrector_steps)."""
        return enhance_audio(self, audio, sample_rate, **kwargs)

    def enhance_folder(self, in_dir: str | os.PathLike, out_dir: str | os.PathLike, **kwargs):
        """Enhance every file of a folder; see `polydiff.speech.enhance.enhance_folder`."""
        return enhance_folder(self, in_dir, out_dir, **kwargs)

    def load_predictor(self, path: str | os.PathLike) -> StoRM:
        """Load D from an exported StoRM (e.g. a "predictive" run) before "frozen_predictive"
        training: the `predictor.*` weights of its model.safetensors."""
        from polydiff.core.io import load_safetensors

        path = Path(path)
        # the file name of polydiff.core.train.WEIGHTS_FILE (not imported: it loads Lightning)
        file = path / "model.safetensors" if path.is_dir() else path
        state = {
            k[len("predictor.") :]: v
            for k, v in load_safetensors(file).items()
            if k.startswith("predictor.")
        }
        if not state:
            raise ValueError(f"{file}: no predictor.* weights (not an exported StoRM model)")
        try:
            self.predictor.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{file}: predictor weights do not fit this StoRM: {err}") from err
        return self

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str = "cpu") -> StoRM:
        """Build from an exported folder (config.json + model.safetensors)."""
        from polydiff.core.train import load_config, load_weights

        model = cls(StoRMConfig.from_dict(load_config(path)))
        load_weights(Path(path), model)
        return model.to(map_location).eval()


def storm_loss(net: StoRM, batch: dict) -> dict[str, Tensor]:
    """`loss_fn(net, batch)` for `polydiff.core.train.DiffusionModule` over `PairedSpeech`
    batches; the mode is the model's (`StoRM.set_mode`)."""
    return net.loss(batch["clean"], batch["noisy"])


__all__ = ["MODES", "StoRM", "StoRMConfig", "predictor_config", "score_config", "storm_loss"]
