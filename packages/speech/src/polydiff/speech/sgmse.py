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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from polydiff.core.method import register_method
from polydiff.core.paths import OUVE
from polydiff.core.sample import sample
from polydiff.speech.audio import PRESETS as SPEC_PRESETS
from polydiff.speech.audio import SpecConfig, preset
from polydiff.speech.method import EnhanceOptions, OUVEConfig, SpeechMethod, check_t_start
from polydiff.speech.nets import PRESETS as NET_PRESETS
from polydiff.speech.nets import NCSNpp, NCSNppConfig, channels_to_spec, spec_to_channels

EpsFn = Callable[[Tensor, Tensor], Tensor]  # eps_fn(x_t, t) -> predicted unit noise z


# ----------------------------------------------------------------------------- configuration


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


def with_changes(config: Any, changes: dict | None) -> Any:
    """The dataclass ``config`` with the field ``changes`` that are not None (lists, as YAML and
    JSON give them, become tuples)."""
    kept = {k: tuple(v) if isinstance(v, list) else v for k, v in (changes or {}).items()}
    return dataclasses.replace(config, **{k: v for k, v in kept.items() if v is not None})


def net_preset(name: str, **changes: Any) -> NCSNppConfig:
    """The NCSN++ preset ``name`` with field ``changes`` (`with_changes`)."""
    if name not in NET_PRESETS:
        raise ValueError(f"unknown NCSN++ preset {name!r}; choose one of {', '.join(NET_PRESETS)}")
    return with_changes(NET_PRESETS[name], changes)


def spec_from_preset(name: str, changes: dict | None = None) -> SpecConfig:
    """The STFT preset ``name`` (`polydiff.speech.audio.PRESETS`) with field ``changes``
    (`with_changes`)."""
    return with_changes(preset(name), changes)


@dataclass(frozen=True)
class SGMSEConfig(OUVEConfig):
    """SGMSE+ settings (defaults: the paper's 16 kHz model).

    spec: STFT / compression (alpha 0.5, beta 0.15). net: the score network (NCSN++, 65.6M;
    `nets.PRESETS["micro"]` etc. for CPU). theta, sigma_min, sigma_max: OUVE SDE (Eq. 6).
    t_eps: smallest time in training and sampling. N: sampler steps; snr: corrector step
    size 2 (snr sigma(t))^2; corrector_steps: Langevin moves per step (0: predictor only);
    t_start: time the reverse process starts from (the papers: 1; see `pc_sample`).
    """

    net: NCSNppConfig = field(default_factory=lambda: net_preset("ncsnpp"))

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "net", net_config(self.net))
        check_net(self.net, self.spec, 4, True, "SGMSEConfig")


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


def reverse_sample(
    eps_fn: EpsFn,
    mu: Tensor,
    path: OUVE,
    t_eps: float,
    options: EnhanceOptions,
    generator: torch.Generator | None = None,
    x_init: Tensor | None = None,
    denoise_final: bool = False,
) -> Tensor:
    """The reverse process of SGMSE+ and StoRM with the setting ``options``
    (`SpeechMethod.options`) from ``x_init`` (default: the prior mu + sigma(t_start) z), run by
    ``polydiff.core.sample`` on the centered variable x - mu; eps_fn(x_t, t) predicts the unit
    noise (score = -eps / sigma(t)), ``t`` a (B,) tensor in x's dtype (complex: use ``t.real``).

    - "pc": SGMSE+'s predictor-corrector sampler (Richter et al. 2023, Sec. III-D; Song et al.
      2021, "Score-Based Generative Modeling through SDEs", Algorithm 2): on `pc_grid` each step
      takes ``corrector_steps`` annealed Langevin moves with step 2 (snr sigma(t))^2, then one
      reverse-diffusion (Euler-Maruyama) step; the last step returns its mean.
      NFE = N (1 + corrector_steps).
    - "ode": the probability-flow ODE (Song et al. 2021, Eq. 13; SGMSE's "ODE" sampler, which
      uses RK45) with ``ode_solver`` (DPM-Solver++(2M): 1 NFE per step; or any core ODE solver
      such as heun) over N steps uniform in log-SNR from t_start to t_eps; only the prior draw
      is random; ``denoise_final`` returns the data prediction at t_eps (one more NFE).

    The papers start at t_start = 1; a later start skips the high-noise times where an
    under-trained score is worse than no score at all (docs/speech.md, "Why the diffusion stage
    degraded").
    """
    o = options
    if x_init is None:
        x_init = prior_sample(path, mu, generator, o.t_start)
    if o.sampler == "ode":
        how = {"solver": o.ode_solver, "steps": o.N, "grid": "logsnr", "t_start": o.t_start}
        how.update(t_end=t_eps, denoise_final=denoise_final)
    else:
        grid = pc_grid(o.N, t_eps, o.t_start).to(mu.device)
        how = {"solver": "pc_langevin", "grid": grid}
        how["solver_kwargs"] = {"snr": o.snr, "corrector_steps": o.corrector_steps}
    return sample(eps_fn, x_init, path=path, prediction="eps", mu=mu, generator=generator, **how)


def pc_sample(eps_fn: EpsFn, mu: Tensor, path: OUVE, N: int = 30, **kwargs: Any) -> Tensor:
    """`reverse_sample` with the "pc" sampler; ``kwargs``: t_eps (0.03), snr (0.5),
    corrector_steps (1), t_start (1), x_init, generator."""
    return _sample_with("pc", eps_fn, mu, path, N, **kwargs)


def ode_sample(eps_fn: EpsFn, mu: Tensor, path: OUVE, N: int = 30, **kwargs: Any) -> Tensor:
    """`reverse_sample` with the "ode" sampler; ``kwargs``: t_eps (0.03), solver ("dpmpp_2m"),
    t_start (1), x_init, generator, denoise_final."""
    if "solver" in kwargs:
        kwargs["ode_solver"] = kwargs.pop("solver")
    return _sample_with("ode", eps_fn, mu, path, N, **kwargs)


def _sample_with(sampler: str, eps_fn, mu, path, N, *, t_eps=0.03, x_init=None, generator=None,
                 denoise_final=False, **options) -> Tensor:  # fmt: skip
    o = EnhanceOptions(sampler=sampler, N=N, **options)
    return reverse_sample(eps_fn, mu, path, t_eps, o, generator, x_init, denoise_final)


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


# ----------------------------------------------------------------------------- the method


class SGMSENet(nn.Module):
    """SGMSE+'s network: the NCSN++ score network (weights ``score_net.*``) and the OUVE path."""

    def __init__(self, cfg: SGMSEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.score_net = NCSNpp(cfg.net)
        self.path = OUVE(cfg.theta, cfg.sigma_min, cfg.sigma_max)

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


@register_method
class SGMSE(SpeechMethod):
    """SGMSE+ (Richter et al. 2023): OUVE SDE + NCSN++ score network + PC / ODE samplers.

    >>> method = SGMSE(SGMSEConfig(net=nets.PRESETS["micro"]))
    >>> enhanced = method.enhance(noisy, sample_rate=16000, seed=0)   # any length, (T,) or (C, T)
    """

    name, config_class = "sgmse", SGMSEConfig

    def build_net(self) -> SGMSENet:
        return SGMSENet(self.config)

    @torch.no_grad()
    def sample(
        self, Y: Tensor, *, generator: torch.Generator | None = None, **options: Any
    ) -> Tensor:
        """Enhance compressed spectrograms Y (B, F, T) (T a multiple of the frame multiple) with
        the setting ``options`` (`SpeechMethod.options`; unset: the config's)."""
        net = self.net

        def eps_fn(x: Tensor, t: Tensor) -> Tensor:
            return net(x, Y, t)

        o = self.options(**options)
        return reverse_sample(eps_fn, Y, net.path, self.config.t_eps, o, generator)

    @classmethod
    def from_presets(
        cls, spec: str | None = None, net: str = "micro", *, spec_changes: dict | None = None,
        net_changes: dict | None = None, **fields: Any,
    ) -> SGMSE:  # fmt: skip
        """SGMSE+ from an STFT preset (None: 16k) and an NCSN++ preset, each with field
        changes, and any other config ``fields`` (theta, sigma_min, N, ...)."""
        spec_cfg = spec_from_preset(spec or "16k", spec_changes)
        return cls(SGMSEConfig(spec=spec_cfg, net=net_preset(net, **(net_changes or {})), **fields))


__all__ = [
    "SGMSE",
    "SGMSEConfig",
    "SGMSENet",
    "check_net",
    "complex_noise",
    "net_config",
    "net_preset",
    "ode_sample",
    "pc_grid",
    "pc_sample",
    "prior_sample",
    "real_time",
    "reverse_sample",
    "sample_t",
    "score_matching_loss",
    "sgmse_48k_config",
    "spec_from_preset",
    "with_changes",
]
