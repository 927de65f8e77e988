"""The 2D slice prior, a core :class:`~polydiff.core.method.Method`: recipe, training, export,
loading and unconditional sampling.

A :class:`~polydiff.medical.nets.SliceUNet` predicts the noise eps of slices on the VP
(linear-beta) path (Ho et al., 2020, "Denoising Diffusion Probabilistic Models", Eq. 14; the
continuous-time VP SDE of Song et al., 2021, beta 0.1-20), trained through
:mod:`polydiff.core.train` on random phantom slices. :class:`SlicePriorMethod` (registered as
``medical/slice_prior``) saves safetensors plus the core's JSON config; :func:`load_prior`
returns the :class:`~polydiff.medical.solvers.SlicePrior` that every solver takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from polydiff.core.errors import InputError
from polydiff.core.io import read_json
from polydiff.core.losses import diffusion_loss
from polydiff.core.method import FORMAT, Config, Method, load_method, register_method
from polydiff.core.paths import VPLinear
from polydiff.core.sample import sample
from polydiff.core.train import DiffusionModule, ResumableLoader, fit, load_config, load_weights
from polydiff.medical.data import phantom_slices
from polydiff.medical.data.anatomy import anatomy_slices
from polydiff.medical.data.phantoms import PHANTOM_KINDS
from polydiff.medical.nets import SliceUNet, SliceUNetConfig
from polydiff.medical.solvers.common import ModelFn, SlicePrior

#: the network's noise input is the DDPM step index scale, c_noise = 999 t for t in [0, 1]
C_NOISE_SCALE = 999.0

#: the prior shipped with the package (checkpoints/<name>/: safetensors, config, README)
SHIPPED_PRIOR = "phantom-32"
#: the default prior for real volumes (NIfTI / DICOM input): trained on real anatomy, 64x64
REAL_PRIOR = "anatomy-64"
#: its training steps (the PriorConfig default): the EMA weights of the step-7000 checkpoint
SHIPPED_STEPS = 7000
#: where the shipped priors live inside the package
CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def _recipe(saved: dict[str, Any], where: object) -> dict[str, Any]:
    """The :class:`PriorConfig` fields of a saved prior's ``config.json``: ``config`` in the
    core method layout, ``prior`` in the layout exported before it (still loaded)."""
    if saved.get("format") == FORMAT and saved.get("domain") == "medical":
        if saved.get("method") != SlicePriorMethod.name:
            raise ValueError(f"{where}: a medical {saved.get('method')!r}, not a slice prior")
        return saved.get("config", {})
    if "prior" in saved and "unet" in saved:
        return saved["prior"]
    raise ValueError(f"{where}: config.json is not a polydiff.medical prior (no prior/unet)")


def prior_image_size(folder: str | Path) -> int:
    """The slice size a saved prior was trained on (its config's ``image_size``)."""
    size = _recipe(load_config(folder), folder).get("image_size")
    if not isinstance(size, int):
        raise ValueError(f"{folder}: config.json names no slice size (image_size)")
    return size


def shipped_priors(real: bool = False) -> dict[int, Path]:
    """The shipped priors by the slice size in their ``config.json`` (``image_size``): those
    trained on phantoms, or with ``real`` those trained on real anatomy (``data_kind``
    ``anatomy``)."""
    found: dict[int, Path] = {}
    for config in sorted(CHECKPOINTS.glob("*/config.json")):
        recipe = _recipe(read_json(config), config)
        if (recipe.get("data_kind") == "anatomy") != real:
            continue
        if (config.parent / "model.safetensors").is_file():
            found.setdefault(int(recipe["image_size"]), config.parent)
    return found


def shipped_prior_dir(
    name: str = SHIPPED_PRIOR, image_size: int | None = None, real: bool = False
) -> Path:
    """The folder of a prior shipped inside the package (``polydiff/medical/checkpoints``).

    ``image_size`` picks the shipped prior trained on slices of that size (its
    ``config.json``'s ``image_size``) instead of ``name``: for phantoms ``phantom-32`` for 32,
    ``phantom-64`` for 64; with ``real`` the real-anatomy prior of that size
    (:data:`REAL_PRIOR` for 64), else the phantom one. A slice prior only fits volumes whose
    slices have its size.
    """
    if image_size is not None:
        priors = {**shipped_priors(), **(shipped_priors(real=True) if real else {})}
        if image_size not in priors:
            raise FileNotFoundError(
                f"no shipped prior for {image_size}x{image_size} slices (shipped: "
                f"{', '.join(f'{n}x{n}' for n in sorted(priors)) or 'none'}); train one with "
                f"`polydiff medical train prior.image_size={image_size}`"
            )
        return priors[image_size]
    folder = CHECKPOINTS / name
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder}: no shipped prior {name!r} (model.safetensors missing)")
    return folder


def prior_folder(
    image_size: tuple[int, int] | list[int], folder: str | Path | None = None, real: bool = False
) -> Path:
    """The prior for slices of ``image_size`` ``(H, W)``: ``folder``, or with ``None`` the
    shipped one for that size (``real``: the real-anatomy one where shipped); a prior trained
    on slices of another size is refused (a convolutional prior runs on them, but knows
    nothing of them)."""
    height, width = image_size
    folder = shipped_prior_dir(image_size=height, real=real) if folder is None else Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (a prior is the <run>/model folder that "
                         "`polydiff medical train` exports)")  # fmt: skip
    size = prior_image_size(folder)
    if (height, width) != (size, size):
        raise ValueError(
            f"{folder} was trained on {size}x{size} slices; the volume's slices are "
            f"{height}x{width} (fit=resample or fit=crop_pad brings an input volume to them)"
        )
    return folder


#: what a prior trains on: the built-in phantoms or augmented slices of real anatomy
DATA_KINDS = (*PHANTOM_KINDS, "anatomy")


@dataclass
class PriorConfig(Config):
    """Everything needed to retrain (and rebuild) the slice prior; saved as JSON on export.

    The defaults are the shipped CPU prior (``checkpoints/phantom-32``): the ``cpu-small``
    U-Net (0.67M parameters) on 32^2 slices of 64 randomised Shepp-Logan volumes, 7000
    steps (about two hours on one loaded CPU thread; a 64^2 prior needs ~4x longer per step).
    ``unet="gpu-base"`` with ``image_size=256`` is the GPU size; ``unet_overrides`` changes
    single U-Net fields. ``data_kind="anatomy"`` trains on ``n_volumes * image_size``
    augmented slices of real anatomy (:func:`polydiff.medical.data.anatomy.anatomy_slices`);
    ``init_from`` names a saved prior (same U-Net) whose weights training starts from.
    """

    image_size: int = 32
    unet: str = "cpu-small"
    unet_overrides: dict[str, Any] = field(default_factory=dict)
    beta_min: float = 0.1
    beta_max: float = 20.0
    data_kind: str = "shepp_logan"
    n_volumes: int = 64
    seed: int = 0
    batch_size: int = 32
    lr: float = 5e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip_norm: float = 1.0
    max_steps: int = SHIPPED_STEPS
    checkpoint_every: int = 250
    init_from: str | None = None

    def __post_init__(self) -> None:
        for name, low in (("image_size", 8), ("n_volumes", 1), ("batch_size", 1), ("max_steps", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"prior.{name}={getattr(self, name)}: must be >= {low}")
        for name in ("lr", "grad_clip_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"prior.{name}={getattr(self, name)}: must be > 0")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"prior.ema_decay={self.ema_decay}: must be in [0, 1)")
        if self.data_kind not in DATA_KINDS:
            raise ValueError(
                f"prior.data_kind={self.data_kind!r}: choose {' or '.join(DATA_KINDS)}"
            )
        # JSON turns tuples into lists; the U-Net config compares and hashes with tuples
        self.unet_overrides = {
            k: tuple(v) if isinstance(v, list) else v for k, v in self.unet_overrides.items()
        }
        self.unet_config()  # an unknown preset or a bad override fails here

    def unet_config(self) -> SliceUNetConfig:
        return SliceUNetConfig.preset(self.unet, **self.unet_overrides)

    def path(self) -> VPLinear:
        return VPLinear(self.beta_min, self.beta_max)


class EpsModel(nn.Module):
    """``model_fn(x, t)`` of a slice U-Net: eps_theta(x_t, t) with c_noise = 999 t."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, C_NOISE_SCALE * t.to(x.dtype))


def eps_model(net: nn.Module) -> ModelFn:
    """The ``model_fn(x, t)`` (an :class:`EpsModel`) that the solvers call."""
    return EpsModel(net)


def prior_loss(net: nn.Module, batch: tuple[Tensor, ...], path: VPLinear) -> Tensor:
    """The eps-prediction loss ``E_t,eps ||eps_theta(alpha_t x0 + sigma_t eps, t) - eps||^2``
    (Ho et al., 2020, Eq. 14), t uniform on [1e-3, 1]."""
    (x0,) = batch
    return diffusion_loss(eps_model(net), x0, path, prediction="eps").mean()


@register_method
class SlicePriorMethod(Method):
    """The slice prior as a core method: :class:`PriorConfig`, a :class:`SliceUNet` built from
    it, :func:`prior_loss`, :meth:`sample` (unconditional slices) and :meth:`slice_prior` (the
    :class:`SlicePrior` the reconstruction solvers take). Saved with the resolved U-Net config
    beside the recipe, so a saved prior rebuilds even if a preset changes."""

    domain, name, config_class = "medical", "slice_prior", PriorConfig

    def build_net(self) -> nn.Module:
        return SliceUNet(self.config.unet_config())

    def loss_fn(self, net: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        return prior_loss(net, batch, self.config.path())

    def metadata(self) -> dict[str, Any]:
        return {"unet": self.config.unet_config().to_dict()}

    @classmethod
    def from_saved(
        cls, folder: Path, config: Any, saved: dict[str, Any], **kwargs: Any
    ) -> SlicePriorMethod:
        if kwargs:
            raise TypeError(f"{cls.__name__} takes no load options, got {sorted(kwargs)}")
        unet = saved.get("unet")
        return cls(config, None if unet is None else SliceUNet(SliceUNetConfig.from_dict(unet)))

    def slice_prior(self, chunk: int | None = None) -> SlicePrior:
        """The network as the solvers' :class:`SlicePrior` (eps on the recipe's VP path)."""
        return SlicePrior(EpsModel(self.net), self.config.path(), "eps", chunk=chunk)

    @torch.no_grad()
    def sample(
        self,
        n: int = 1,
        *,
        steps: int = 50,
        solver: str = "ddim",
        clip: tuple[float, float] | None = (0.0, 1.0),
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """``n`` unconditional slices ``(n, S, S)`` from the prior by the core driver
        (:func:`polydiff.core.sample.sample` with ``solver`` and ``steps``; ``options`` go to
        it), the Tweedie estimate clamped to ``clip`` at every step (None: no clamp)."""
        size, path = self.config.image_size, self.config.path()
        x_init = path.prior_sample((n, 1, size, size), generator=generator, device=self.device)
        hook = None if clip is None else (lambda x0, x, t: x0.clamp(*clip))
        options |= {"solver": solver, "steps": steps, "x0_hook": hook, "generator": generator}
        return sample(EpsModel(self.net), x_init, path=path, **options).squeeze(1)


def training_slices(config: PriorConfig) -> Tensor:
    """The training set: ``(N, 1, S, S)`` slices in [0, 1]: of ``n_volumes`` seeded phantoms,
    or for ``anatomy`` ``n_volumes * image_size`` augmented real-anatomy slices."""
    if config.data_kind == "anatomy":
        n = config.n_volumes * config.image_size
        return anatomy_slices(n, config.image_size, config.seed).unsqueeze(1)
    return phantom_slices(
        config.n_volumes, config.image_size, config.data_kind, config.seed
    ).unsqueeze(1)


def init_folder(name: str) -> Path:
    """The prior folder ``init_from`` names: a shipped prior's name or a folder."""
    shipped = CHECKPOINTS / name
    folder = shipped if (shipped / "model.safetensors").is_file() else Path(name)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"prior.init_from={name}: no shipped prior or prior folder")
    return folder


def build_training(config: PriorConfig) -> tuple[DiffusionModule, ResumableLoader]:
    """The :class:`DiffusionModule` (U-Net + :func:`prior_loss`, Adam-W, warmup, EMA) and the
    resumable loader over :func:`training_slices`. The U-Net's initial weights follow
    ``config.seed`` alone (torch's global generator is left as it was), so two runs with one
    config train the same weights, in one process or two."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        method = SlicePriorMethod(config)
    if config.init_from is not None:
        load_weights(init_folder(config.init_from), method.net)
    module = DiffusionModule(
        method.net,
        method.loss_fn,
        lr=config.lr,
        warmup_steps=config.warmup_steps,
        ema_decay=config.ema_decay,
        grad_clip_norm=config.grad_clip_norm,
    )
    data = TensorDataset(training_slices(config))
    loader = ResumableLoader(data, batch_size=config.batch_size, seed=config.seed)
    return module, loader


def train_prior(
    config: PriorConfig, run_dir: str | Path, export_to: str | Path | None = None, **fit_kwargs: Any
) -> DiffusionModule:
    """Train (or resume) the prior in ``run_dir`` and export it (EMA weights) to ``export_to``
    (default ``run_dir/model``). ``fit_kwargs`` go to :func:`polydiff.core.train.fit`."""
    module, loader = build_training(config)
    fit_kwargs.setdefault("checkpoint_every", config.checkpoint_every)
    fit_kwargs.setdefault("seed", config.seed)
    fit(module, loader, run_dir, max_steps=config.max_steps, **fit_kwargs)
    export_prior(module, Path(run_dir) / "model" if export_to is None else export_to, config)
    return module


def export_prior(module: nn.Module, folder: str | Path, config: PriorConfig) -> Path:
    """``folder/model.safetensors`` (the DiffusionModule's EMA weights) + ``folder/config.json``
    (the core method layout: the :class:`PriorConfig` and the resolved U-Net config), written
    atomically."""
    return SlicePriorMethod(config, getattr(module, "net", module)).save(folder, module)


def load_prior_method(
    folder: str | Path, device: torch.device | str | None = None
) -> SlicePriorMethod:
    """A saved prior as a :class:`SlicePriorMethod` in eval mode with frozen weights
    (gradients still flow to the input, for DPS). Folders exported before the core method
    layout (``{"prior": ..., "unet": ...}``) load too."""
    saved = load_config(folder)
    recipe = _recipe(saved, folder)
    if saved.get("format") == FORMAT:
        method = load_method(folder, domain="medical", device=device or "cpu")
    else:
        config = PriorConfig.from_dict(recipe, source=str(Path(folder) / "config.json"))
        method = SlicePriorMethod.from_saved(Path(folder), config, saved)
        load_weights(folder, method.net)
        method.net.to(device).eval()
    method.net.requires_grad_(False)
    return method  # type: ignore[return-value]


def load_prior(
    folder: str | Path, device: torch.device | str | None = None, chunk: int | None = None
) -> SlicePrior:
    """The exported prior as a :class:`SlicePrior` (eps prediction on its VP path); the
    network is in eval mode with frozen weights (gradients still flow to the input, for DPS)."""
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise InputError(f"chunk (slices per network call) must be an integer >= 1, got {chunk!r}")
    return load_prior_method(folder, device).slice_prior(chunk)


__all__ = [
    "REAL_PRIOR",
    "SHIPPED_PRIOR",
    "EpsModel",
    "PriorConfig",
    "SlicePriorMethod",
    "build_training",
    "eps_model",
    "export_prior",
    "load_prior",
    "load_prior_method",
    "prior_folder",
    "prior_image_size",
    "prior_loss",
    "shipped_prior_dir",
    "shipped_priors",
    "train_prior",
    "training_slices",
]
