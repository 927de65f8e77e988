"""SGMSE+: score-based speech enhancement with the OUVE SDE, as one unit.

Richter, Welker, Lemercier, Lay, Gerkmann (2023), "Speech Enhancement and Dereverberation with
Diffusion-based Generative Models", IEEE/ACM TASLP 31. The clean compressed spectrogram x0 is
diffused toward the noisy one y by the Ornstein-Uhlenbeck SDE with variance-exploding diffusion

    dx = theta (y - x) dt + g(t) dw,  g(t) = s_min (s_max/s_min)^t sqrt(2 ln(s_max/s_min))  (Eq. 6),

so x_t ~ CN(e^{-theta t} x0 + (1 - e^{-theta t}) y, sigma(t)^2) (Eq. 7-8); the OUVE path itself is
``polydiff.core.paths.OUVE``. An NCSN++ on cat(x_t, y) estimates the score as
s = -net(x_t, y, t) / sigma(t), i.e. the network predicts the unit complex noise z of
x_t = mean + sigma z ("eps" in the core's vocabulary). Training minimises
0.5 |sigma s + z|^2 = 0.5 |z - net|^2 summed over the spectrogram with t ~ U[t_eps, 1] (Eq. 10).
Enhancement starts at y + sigma(1) z and runs the predictor-corrector sampler (annealed Langevin
corrector, then the reverse-diffusion predictor) on t = linspace(1, t_eps, N) followed by a last
step to 0 whose mean is returned (Sec. III-D; NFE = 2N), or the probability-flow ODE. Our one
addition is ``t_start`` (default 1, the paper's): the reverse process may start later, at
y + sigma(t_start) z, skipping the high-noise times where an under-trained score does harm.

Complex noise has E|z|^2 = 1 (real and imaginary parts of variance 1/2), as in SGMSE; the score
is the derivative with respect to that convention, which keeps the reverse SDE and Langevin steps
consistent (each real component sees half the variance and twice the score).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polydiff.core.paths import OUVE
from polydiff.core.sample import sample
from polydiff.speech.audio import PRESETS as SPEC_PRESETS
from polydiff.speech.audio import SpecConfig
from polydiff.speech.enhance import enhance_audio, enhance_folder
from polydiff.speech.nets import PRESETS as NET_PRESETS
from polydiff.speech.nets import NCSNpp, NCSNppConfig, channels_to_spec, spec_to_channels

EpsFn = Callable[[Tensor, Tensor], Tensor]  # eps_fn(x_t, t) -> predicted unit noise z


# ----------------------------------------------------------------------------- configuration


def spec_config(d: dict | SpecConfig) -> SpecConfig:
    """A SpecConfig from its `to_dict()` (JSON) form."""
    return d if isinstance(d, SpecConfig) else SpecConfig(**d)


def net_config(d: dict | NCSNppConfig) -> NCSNppConfig:
    """An NCSNppConfig from its `to_dict()` (JSON) form (lists back to tuples)."""
    if isinstance(d, NCSNppConfig):
        return d
    d = dict(d)
    for key in ("ch_mult", "attn_resolutions"):
        if key in d:
            d[key] = tuple(d[key])
    return NCSNppConfig(**d)


def check_net(cfg: NCSNppConfig, spec: SpecConfig, in_channels: int, conditional: bool, who: str):
    """Raise ValueError unless `cfg` has the channels/conditioning the method needs and its
    downsampling divides the frequency bins and the frame padding."""
    if cfg.in_channels != in_channels or cfg.out_channels != 2:
        raise ValueError(
            f"{who}: the network needs in_channels={in_channels} and out_channels=2, got "
            f"{cfg.in_channels} and {cfg.out_channels}"
        )
    if cfg.conditional != conditional:
        raise ValueError(f"{who}: the network needs conditional={conditional}")
    if spec.n_freqs % cfg.multiple or spec.frame_multiple % cfg.multiple:
        raise ValueError(
            f"{who}: {spec.n_freqs} frequency bins and frame_multiple {spec.frame_multiple} "
            f"must be multiples of the network's {cfg.multiple}"
        )


def _net(name: str, **changes: Any) -> NCSNppConfig:
    return dataclasses.replace(NET_PRESETS[name], **changes)


@dataclass(frozen=True)
class SGMSEConfig:
    """SGMSE+ settings (defaults: the paper's 16 kHz model).

    spec: STFT / compression (alpha 0.5, beta 0.15). net: the score network (NCSN++, 65.6M;
    `nets.PRESETS["micro"]` etc. for CPU). theta, sigma_min, sigma_max: OUVE SDE (Eq. 6).
    t_eps: smallest time in training and sampling. N: sampler steps; snr: corrector step
    size 2 (snr sigma(t))^2; corrector_steps: Langevin moves per step (0: predictor only);
    t_start: time the reverse process starts from (the papers: 1; see `pc_sample`).
    """

    spec: SpecConfig = field(default_factory=lambda: SPEC_PRESETS["16k"])
    net: NCSNppConfig = field(default_factory=lambda: _net("ncsnpp"))
    theta: float = 1.5
    sigma_min: float = 0.05
    sigma_max: float = 0.5
    t_eps: float = 0.03
    N: int = 30
    snr: float = 0.5
    corrector_steps: int = 1
    t_start: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", spec_config(self.spec))
        object.__setattr__(self, "net", net_config(self.net))
        check_net(self.net, self.spec, 4, True, "SGMSEConfig")
        _check_sampler(self.t_eps, self.N, self.snr, self.corrector_steps, "SGMSEConfig")
        check_t_start(self.t_start, self.t_eps, "SGMSEConfig")

    def to_dict(self) -> dict:
        return {"method": "sgmse", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> SGMSEConfig:
        d = {k: v for k, v in d.items() if k != "method"}
        return cls(**d)


def sgmse_48k_config(**changes: Any) -> SGMSEConfig:
    """SGMSE+ at 48 kHz (the EARS recipe of the SGMSE code): n_fft 1534, hop 384, alpha 0.667,
    beta 0.065, OUVE with sigma 0.1-1.0 and theta 2.0; ``changes`` override any field."""
    base = {
        "spec": SPEC_PRESETS["48k"],
        "theta": 2.0,
        "sigma_min": 0.1,
        "sigma_max": 1.0,
    }
    return SGMSEConfig(**{**base, **changes})


def _check_sampler(
    t_eps: float, N: int, snr: float, corrector_steps: int, who: str, min_N: int = 1
) -> None:
    if not 0 < t_eps < 1:
        raise ValueError(f"{who}: t_eps must be in (0, 1), got {t_eps}")
    if N < min_N or snr <= 0 or corrector_steps < 0:
        raise ValueError(
            f"{who}: need N >= {min_N}, snr > 0, corrector_steps >= 0; "
            f"got {N}, {snr}, {corrector_steps}"
        )


def check_t_start(t_start: float, t_eps: float, who: str) -> None:
    """Raise ValueError unless t_eps < t_start <= 1 (the interval the network was trained on)."""
    if not t_eps < t_start <= 1:
        raise ValueError(f"{who}: t_start must be in ({t_eps}, 1], got {t_start}")


# ----------------------------------------------------------------------------- samplers


def pc_grid(N: int, t_eps: float = 0.03, t_start: float = 1.0) -> Tensor:
    """SGMSE's time grid: linspace(t_start, t_eps, N) then 0, so N steps, the last from t_eps to
    0 (SGMSE: t_start = 1)."""
    if N < 1:
        raise ValueError(f"pc_grid: N must be >= 1, got {N}")
    check_t_start(t_start, t_eps, "pc_grid")
    return torch.cat(
        [
            torch.linspace(t_start, t_eps, N, dtype=torch.float64),
            torch.zeros(1, dtype=torch.float64),
        ]
    )


def prior_sample(
    path: OUVE, mu: Tensor, generator: torch.Generator | None = None, t: float = 1.0
) -> Tensor:
    """x_t = mu + sigma(t) z at the start time t (SGMSE: t = 1; the leftover
    e^{-theta t} (x0 - mu) of the marginal is ignored, as in the papers)."""
    return path.prior_sample(tuple(mu.shape), t=t, mu=mu, generator=generator, dtype=mu.dtype)


def pc_sample(
    eps_fn: EpsFn,
    mu: Tensor,
    path: OUVE,
    N: int = 30,
    *,
    t_eps: float = 0.03,
    snr: float = 0.5,
    corrector_steps: int = 1,
    t_start: float = 1.0,
    x_init: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SGMSE+'s predictor-corrector sampler (Richter et al. 2023, Sec. III-D; Song et al. 2021,
    "Score-Based Generative Modeling through SDEs", Algorithm 2): on t = linspace(t_start,
    t_eps, N), 0 each step takes ``corrector_steps`` annealed Langevin moves with step
    2 (snr sigma(t))^2, then one reverse-diffusion (Euler-Maruyama) step; the last step returns
    its mean. NFE = N (1 + corrector_steps). Runs the core's ``pc_langevin`` through
    ``polydiff.core.sample`` on the centered variable x - mu.

    eps_fn(x_t, t) predicts the unit noise (score = -eps / sigma(t)); ``t`` reaches it as a
    (B,) tensor in x's dtype (complex here: use ``t.real``). ``x_init`` defaults to the prior
    mu + sigma(t_start) z. The papers start at t_start = 1; a smaller start skips the
    high-noise times where an under-trained score is worse than no score at all (measured in
    docs/speech.md, "Why the diffusion stage degraded").
    """
    if x_init is None:
        x_init = prior_sample(path, mu, generator, t_start)
    return sample(
        eps_fn,
        x_init,
        path=path,
        solver="pc_langevin",
        grid=pc_grid(N, t_eps, t_start).to(mu.device),
        prediction="eps",
        mu=mu,
        generator=generator,
        solver_kwargs={"snr": snr, "corrector_steps": corrector_steps},
    )


def ode_sample(
    eps_fn: EpsFn,
    mu: Tensor,
    path: OUVE,
    N: int = 30,
    *,
    t_eps: float = 0.03,
    solver: str = "dpmpp_2m",
    t_start: float = 1.0,
    x_init: Tensor | None = None,
    generator: torch.Generator | None = None,
    denoise_final: bool = False,
) -> Tensor:
    """Probability-flow ODE sampler (Song et al. 2021, Eq. 13; SGMSE's "ODE" sampler, which uses
    RK45): ``solver`` (DPM-Solver++(2M), 1 NFE per step; or any core ODE solver such as heun)
    over N steps uniform in log-SNR from t_start to t_eps. Only the prior draw is random. With
    ``denoise_final`` the data prediction at t_eps is returned (one more NFE)."""
    if x_init is None:
        x_init = prior_sample(path, mu, generator, t_start)
    return sample(
        eps_fn,
        x_init,
        path=path,
        solver=solver,
        steps=N,
        grid="logsnr",
        t_start=t_start,
        t_end=t_eps,
        prediction="eps",
        mu=mu,
        denoise_final=denoise_final,
        generator=generator,
    )


def reverse_sample(
    eps_fn: EpsFn,
    mu: Tensor,
    path: OUVE,
    cfg: Any,
    *,
    sampler: str,
    N: int,
    snr: float | None = None,
    corrector_steps: int | None = None,
    t_start: float | None = None,
    ode_solver: str = "dpmpp_2m",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The reverse process shared by SGMSE+ and StoRM, from x = mu + sigma(t_start) z:
    ``sampler`` "pc" (:func:`pc_sample`) or "ode" (:func:`ode_sample`); ``snr``,
    ``corrector_steps`` and ``t_start`` default to ``cfg``'s."""
    t_start = cfg.t_start if t_start is None else float(t_start)
    check_t_start(t_start, cfg.t_eps, "enhance")
    x_init = prior_sample(path, mu, generator, t_start)
    if sampler == "pc":
        return pc_sample(
            eps_fn, mu, path, N, t_eps=cfg.t_eps,
            snr=cfg.snr if snr is None else snr,
            corrector_steps=cfg.corrector_steps if corrector_steps is None else corrector_steps,
            t_start=t_start, x_init=x_init, generator=generator,
        )  # fmt: skip
    if sampler == "ode":
        return ode_sample(
            eps_fn, mu, path, N, t_eps=cfg.t_eps, solver=ode_solver, t_start=t_start,
            x_init=x_init, generator=generator,
        )  # fmt: skip
    raise ValueError(f"sampler must be 'pc' or 'ode', got {sampler!r}")


def real_time(t: Tensor, like: Tensor) -> Tensor:
    """The (B,) diffusion time as a real tensor for the network (the driver casts t to x's dtype,
    which is complex for spectrograms)."""
    t = t.real if t.is_complex() else t
    dtype = like.real.dtype if like.is_complex() else like.dtype
    return t.to(dtype).expand(like.shape[0])


def score_matching_loss(eps_hat: Tensor, z: Tensor) -> Tensor:
    """0.5 |sigma s + z|^2 = 0.5 |z - eps_hat|^2 summed per example, mean over the batch
    (Richter et al. 2023, Eq. 10, with s = -eps_hat / sigma)."""
    err = (eps_hat - z).abs().square()
    return 0.5 * err.reshape(err.shape[0], -1).sum(-1).mean()


def sample_t(batch: int, t_eps: float, like: Tensor, generator=None) -> Tensor:
    """Training times t ~ U[t_eps, 1] (float64, shape (batch,))."""
    u = torch.rand(batch, generator=generator, dtype=torch.float64, device=like.device)
    return t_eps + (1.0 - t_eps) * u


def complex_noise(like: Tensor, generator=None) -> Tensor:
    """Complex standard normal noise (E|z|^2 = 1) shaped like ``like``."""
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


# ----------------------------------------------------------------------------- the model


class SGMSE(nn.Module):
    """SGMSE+ (Richter et al. 2023): OUVE SDE + NCSN++ score network + PC / ODE samplers.

    >>> model = SGMSE(SGMSEConfig(net=nets.PRESETS["micro"]))
    >>> enhanced = model.enhance(noisy, sample_rate=16000, seed=0)   # any length, (T,) or (C, T)
    """

    def __init__(self, cfg: SGMSEConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else SGMSEConfig()
        self.score_net = NCSNpp(self.cfg.net)
        self.path = OUVE(self.cfg.theta, self.cfg.sigma_min, self.cfg.sigma_max)

    @property
    def spec(self) -> SpecConfig:
        return self.cfg.spec

    @property
    def frame_multiple(self) -> int:
        return self.cfg.spec.frame_multiple

    def forward(self, x_t: Tensor, y: Tensor, t: Tensor) -> Tensor:
        """The network's noise estimate for complex spectrograms x_t, y (B, F, T), t (B,)."""
        h = self.score_net(spec_to_channels(x_t, y), real_time(t, x_t))
        return channels_to_spec(h.to(x_t.real.dtype))  # autocast may return bf16/fp16

    def score(self, x_t: Tensor, y: Tensor, t: Tensor) -> Tensor:
        """s(x_t, y, t) = -net(cat(x_t, y), t) / sigma(t)."""
        sigma = self.path.sigma(real_time(t, x_t).double()).to(x_t.real.dtype)
        return -self(x_t, y, t) / sigma[:, None, None]

    def loss(self, x0: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Denoising score matching (Eq. 10): x_t = mean(x0, y, t) + sigma(t) z, t ~ U[t_eps, 1]."""
        t = sample_t(x0.shape[0], self.cfg.t_eps, x0, generator)
        z = complex_noise(x0, generator)
        x_t = self.path.marginal(x0, t, z, mu=y)
        return score_matching_loss(self(x_t, y, t), z)

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
        """Enhance compressed spectrograms Y (B, F, T) (T a multiple of the frame multiple).

        sampler "pc" (defaults N, snr, corrector_steps, t_start from the config) or "ode"."""
        cfg = self.cfg
        N = cfg.N if N is None else N

        def eps_fn(x: Tensor, t: Tensor) -> Tensor:
            return self(x, Y, t)

        return reverse_sample(
            eps_fn, Y, self.path, cfg, sampler=sampler, N=N, snr=snr,
            corrector_steps=corrector_steps, t_start=t_start, ode_solver=ode_solver,
            generator=generator,
        )  # fmt: skip

    def enhance(
        self, audio: np.ndarray | Tensor, sample_rate: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Enhance a waveform (T,) or (C, T) of any length; see `polydiff.speech.enhance.
        enhance_audio` (seed, chunking) and `enhance_spec` (sampler, N, snr, corrector_steps)."""
        return enhance_audio(self, audio, sample_rate, **kwargs)

    def enhance_folder(self, in_dir: str | os.PathLike, out_dir: str | os.PathLike, **kwargs):
        """Enhance every file of a folder; see `polydiff.speech.enhance.enhance_folder`."""
        return enhance_folder(self, in_dir, out_dir, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str = "cpu") -> SGMSE:
        """Build from an exported folder (config.json + model.safetensors)."""
        from polydiff.core.train import load_config, load_weights

        model = cls(SGMSEConfig.from_dict(load_config(path)))
        load_weights(Path(path), model)
        return model.to(map_location).eval()


def sgmse_loss(net: SGMSE, batch: dict) -> Tensor:
    """`loss_fn(net, batch)` for `polydiff.core.train.DiffusionModule` over `PairedSpeech`
    batches (dicts with complex "clean" and "noisy" spectrograms)."""
    return net.loss(batch["clean"], batch["noisy"])


__all__ = [
    "SGMSE",
    "SGMSEConfig",
    "check_net",
    "check_t_start",
    "complex_noise",
    "net_config",
    "ode_sample",
    "pc_grid",
    "pc_sample",
    "prior_sample",
    "real_time",
    "sample_t",
    "score_matching_loss",
    "sgmse_48k_config",
    "sgmse_loss",
    "spec_config",
]
