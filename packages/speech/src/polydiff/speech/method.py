"""The base of the speech enhancement methods (SGMSE+, StoRM) on the core's `Method`.

A speech method is a `polydiff.core.method.Method` of domain "speech" whose ``sample(Y, **options)``
enhances batches of compressed complex spectrograms; every method takes the same options
(:class:`EnhanceOptions`: ``sampler``, ``N``, ``snr``, ``corrector_steps``, ``t_start``,
``ode_solver``), unset ones taken from its config, so the command line, the demo and the
benchmarks call any method the same way. On top of ``sample`` the base gives waveform, file and
folder enhancement (`polydiff.speech.enhance`) and the network evaluations of a setting.

This module holds no method: `polydiff.speech.methods` imports (registers) them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from polydiff.core.method import Config, Method, load_method
from polydiff.core.paths import OUVE
from polydiff.speech.audio import PRESETS as SPEC_PRESETS
from polydiff.speech.audio import SpecConfig

SAMPLERS = ("pc", "ode")


def check_t_start(t_start: float, t_eps: float, who: str) -> None:
    """Raise ValueError unless t_eps < t_start <= 1 (the interval the network was trained on)."""
    if not t_eps < t_start <= 1:
        raise ValueError(f"{who}: t_start must be in ({t_eps}, 1], got {t_start}")


def check_sampler(
    t_eps: float, N: int, snr: float, corrector_steps: int, who: str, min_N: int = 1
) -> None:
    """Raise ValueError unless 0 < t_eps < 1, N >= min_N, snr > 0 and corrector_steps >= 0."""
    if not 0 < t_eps < 1:
        raise ValueError(f"{who}: t_eps must be in (0, 1), got {t_eps}")
    if N < min_N or snr <= 0 or corrector_steps < 0:
        raise ValueError(
            f"{who}: need N >= {min_N}, snr > 0, corrector_steps >= 0; "
            f"got {N}, {snr}, {corrector_steps}"
        )


def spec_config(d: dict | SpecConfig) -> SpecConfig:
    """A SpecConfig from its `to_dict()` (JSON) form."""
    return d if isinstance(d, SpecConfig) else SpecConfig(**d)


@dataclass(frozen=True)
class OUVEConfig(Config):
    """What SGMSE+ and StoRM configs share: the STFT ``spec``, the OUVE SDE (theta, sigma_min,
    sigma_max; Richter et al. 2023, Eq. 6), ``t_eps`` (the smallest time in training and
    sampling) and the sampler defaults of `EnhanceOptions` (N, snr, corrector_steps, t_start).
    Subclasses add their networks and may change defaults; ``min_N`` is the fewest steps."""

    min_N: ClassVar[int] = 1
    spec: SpecConfig = field(default_factory=lambda: SPEC_PRESETS["16k"])
    # the SDE and its time range
    theta: float = 1.5
    sigma_min: float = 0.05
    sigma_max: float = 0.5
    t_eps: float = 0.03
    # the sampler defaults
    N: int = 30
    snr: float = 0.5
    corrector_steps: int = 1
    t_start: float = 1.0

    def __post_init__(self) -> None:
        who = type(self).__name__
        object.__setattr__(self, "spec", spec_config(self.spec))
        check_sampler(self.t_eps, self.N, self.snr, self.corrector_steps, who, self.min_N)
        check_t_start(self.t_start, self.t_eps, who)


@dataclass(frozen=True)
class EnhanceOptions(Config):
    """The sampler setting of one enhancement (every speech method takes the same).

    sampler: "pc" (predictor-corrector) or "ode" (probability flow, ``ode_solver``); N: reverse
    steps (StoRM: 0 = its predictive network alone); snr, corrector_steps: the Langevin corrector;
    t_start: the time the reverse process starts from. Resolved by `SpeechMethod.options`.
    """

    sampler: str = "pc"
    N: int = 30
    snr: float = 0.5
    corrector_steps: int = 1
    t_start: float = 1.0
    ode_solver: str = "dpmpp_2m"


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(EnhanceOptions))


class SpeechMethod(Method):
    """A speech enhancement method: ``config`` has ``spec`` (the STFT), ``t_eps`` and the sampler
    defaults ``N``, ``snr``, ``corrector_steps``, ``t_start`` (an `OUVEConfig`);
    ``sample(Y, **options)`` enhances spectrograms. Subclasses set ``name``, ``config_class`` and
    write ``build_net`` and ``sample``; the network's ``loss(clean, noisy)`` is the training
    loss."""

    domain = "speech"

    @property
    def spec(self) -> SpecConfig:
        return self.config.spec

    @property
    def path(self) -> OUVE:
        """The OUVE path of the network (``net.path``)."""
        return self.net.path

    @property
    def frame_multiple(self) -> int:
        return self.config.spec.frame_multiple

    def loss_fn(self, net: torch.nn.Module, batch: dict) -> Tensor | dict[str, Tensor]:
        """`loss_fn(net, batch)` for `polydiff.core.train.DiffusionModule` over `PairedSpeech`
        batches (dicts with complex "clean" and "noisy" spectrograms)."""
        return net.loss(batch["clean"], batch["noisy"])

    def options(self, **options: Any) -> EnhanceOptions:
        """The full setting: ``options`` over the config's defaults (None: the default). An
        unknown name or a value out of range is one ValueError naming it."""
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            known = ", ".join(OPTION_NAMES)
            raise ValueError(f"{self.name}: unknown enhance option(s) {unknown}; known: {known}")
        c = self.config
        defaults = {"N": c.N, "snr": c.snr, "corrector_steps": c.corrector_steps}
        defaults["t_start"] = c.t_start
        given = {k: v for k, v in options.items() if v is not None}
        opts = dataclasses.replace(EnhanceOptions(), **{**defaults, **given})
        for key in ("N", "corrector_steps"):
            if isinstance(getattr(opts, key), bool) or not float(getattr(opts, key)).is_integer():
                raise ValueError(f"{self.name}: {key} must be an integer, got {getattr(opts, key)}")
        opts = dataclasses.replace(
            opts, N=int(opts.N), corrector_steps=int(opts.corrector_steps),
            snr=float(opts.snr), t_start=float(opts.t_start),
        )  # fmt: skip
        if opts.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {opts.sampler!r}")
        check_sampler(c.t_eps, opts.N, opts.snr, opts.corrector_steps, self.name, c.min_N)
        check_t_start(opts.t_start, c.t_eps, "this model")
        return opts

    def nfe(self, **options: Any) -> int:
        """Network evaluations per chunk of a setting: N (1 + corrector_steps) for "pc", N for
        "ode" (one per step of a single-evaluation solver such as DPM-Solver++(2M))."""
        o = self.options(**options)
        return o.N * (1 + o.corrector_steps) if o.sampler == "pc" else o.N

    def describe(self, **options: Any) -> str:
        """A setting's short name in reports, e.g. "sgmse N=30"."""
        return f"{self.name} N={self.options(**options).N}"

    # --- waveforms, files and folders (polydiff.speech.enhance) --------------------------------

    def enhance(
        self, audio: np.ndarray | Tensor, sample_rate: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Enhance a waveform (T,) or (C, T) of any length; see `polydiff.speech.enhance.
        enhance_audio` (seed, chunking) and `options` (sampler, N, snr, corrector_steps, ...)."""
        from polydiff.speech.enhance import enhance_audio

        return enhance_audio(self, audio, sample_rate, **kwargs)

    def enhance_file(self, src: str | os.PathLike, dst: str | os.PathLike, **kwargs: Any) -> str:
        """Enhance one audio file into ``dst``; see `polydiff.speech.enhance.enhance_audio_file`."""
        from polydiff.speech.enhance import enhance_audio_file

        return enhance_audio_file(self, src, dst, **kwargs)

    def enhance_folder(
        self, in_dir: str | os.PathLike, out_dir: str | os.PathLike, **kwargs: Any
    ) -> dict[str, str]:
        """Enhance every file of a folder; see `polydiff.speech.enhance.enhance_folder`."""
        from polydiff.speech.enhance import enhance_folder

        return enhance_folder(self, in_dir, out_dir, **kwargs)

    @classmethod
    def load(cls, folder: str | os.PathLike, map_location: str = "cpu") -> SpeechMethod:
        """A saved method of this class (`polydiff.core.method.load_method`), in eval mode."""
        method = load_method(Path(folder), domain="speech", device=map_location)
        if not isinstance(method, cls):
            raise ValueError(f"{folder}: a saved {method.name} method, not {cls.name}")
        return method


__all__ = [
    "OPTION_NAMES",
    "SAMPLERS",
    "EnhanceOptions",
    "OUVEConfig",
    "SpeechMethod",
    "check_sampler",
    "check_t_start",
    "spec_config",
]
