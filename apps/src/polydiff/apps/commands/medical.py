"""Medical imaging: 3-D CT and MRI reconstruction with 2-D diffusion priors (plumbing only:
each verb builds polydiff.medical's configs, calls the library and writes what it returns)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

if TYPE_CHECKING:
    from torch import Tensor

    from polydiff.medical.measurements import GroundTruth, Measurements
    from polydiff.medical.solvers import SlicePrior

log = logging.getLogger(__name__)


@contextmanager
def _config_errors(prefix: str = "") -> Iterator[None]:
    """The library's one-line ValueError / FileNotFoundError about an input as a ConfigError."""
    try:
        yield
    except (ValueError, FileNotFoundError) as err:
        raise err if isinstance(err, ConfigError) else ConfigError(f"{prefix}{err}") from None


def _path(value: Any, option: str) -> Path:
    """An option's existing path, relative to the directory `polydiff` was started in."""
    from hydra.utils import to_absolute_path

    path = Path(to_absolute_path(str(value)))
    if not path.exists():
        raise ConfigError(f"{option}={value}: no such file or folder")
    return path


def _ground_truth(cfg: DictConfig, shape: list[int | None] | None = None) -> GroundTruth:
    """The input NIfTI (brought to `shape` by `fit=`, where the verb has it) or the phantom."""
    from polydiff.medical.measurements import PhantomConfig, ground_truth

    path = None if cfg.input is None else _path(cfg.input, "input")
    fit = {"fit": cfg.get("fit", "none"), "shape": shape or [None] * 3}
    with _config_errors("" if path is None else "input: "):
        return ground_truth(path, PhantomConfig(**cfg.phantom), cfg.intensity, **fit)


def _is_real(source: str) -> bool:
    """Whether a measured volume came from a file (not a built-in phantom)."""
    return not source.startswith("phantom ")


def _fit_shape(cfg: DictConfig, needs_prior: bool) -> list[int | None]:
    """`fit_shape` (D, H, W) with a null H, W filled by the prior's slice size (`prior=`, or the
    shipped real-anatomy prior) for a diffusion method on an input volume."""
    from polydiff.medical.prior import REAL_PRIOR, prior_image_size, shipped_prior_dir

    shape = cfg.fit_shape
    if not OmegaConf.is_list(shape) or len(shape) != 3:
        raise ConfigError(f"fit_shape must be a list [D, H, W] (null: keep), got {shape!r}")
    shape = list(shape)
    if needs_prior and cfg.input is not None and shape[1] is None and shape[2] is None:
        with _config_errors(f"prior={cfg.prior}: "):
            folder = shipped_prior_dir(REAL_PRIOR) if cfg.prior is None else cfg.prior
            size = prior_image_size(_path(folder, "prior"))
        shape[1:] = [size, size]
    return shape


def _simulate(cfg: DictConfig, truth: GroundTruth) -> Measurements:
    from polydiff.medical.measurements import OperatorConfig, simulate

    with _config_errors():
        return simulate(truth, OperatorConfig(**cfg.operator), cfg.noise_std, cfg.seed)


def _prior(cfg: DictConfig, image_size: Any, real: bool = False) -> tuple[SlicePrior, Path]:
    """The slice prior of `prior=` (null: the shipped one for the slice size, trained on real
    anatomy for a `real` volume where one is shipped) and its folder."""
    from polydiff.core.errors import check_number
    from polydiff.medical.prior import load_prior, prior_folder

    if not isinstance(cfg.prior_chunk, int):
        raise ConfigError(f"prior_chunk must be an integer, got {cfg.prior_chunk!r}")
    check_number("prior_chunk", cfg.prior_chunk, positive=True)
    folder = None if cfg.prior is None else _path(cfg.prior, "prior")
    with _config_errors(f"prior={'null' if cfg.prior is None else cfg.prior}: "):
        folder = prior_folder(tuple(image_size), folder, real)
        return load_prior(folder, chunk=cfg.prior_chunk), folder


def _reconstruct(cfg: DictConfig, name: str, prior: SlicePrior | None, meas: Measurements):
    """The library's named reconstruction with the options of `cfg.<name>`, seeded; nulls take
    the values validated on real anatomy for a volume from a file, on phantoms otherwise."""
    import torch

    from polydiff.medical.reconstruction import reconstruct
    from polydiff.medical.solvers import validated_params

    options = OmegaConf.to_container(cfg[name], resolve=True) if name in cfg else {}
    anatomy = _is_real(meas.geometry["source"])
    if "start" in options:  # a warm start, given or validated, runs with its own section
        first = options["start"]
        if first is None:
            first = validated_params(name, meas.op, anatomy=anatomy).get("start")
        if isinstance(first, str) and first in cfg:
            options["start_options"] = OmegaConf.to_container(cfg[first])
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    with _config_errors(f"method={name}: "):
        return reconstruct(
            name, prior, meas.op, meas.y, generator=generator, anatomy=anatomy, **options
        )


@verb("simulate")
def simulate(cfg: DictConfig, run_dir: Path) -> None:
    """Measure a phantom or a NIfTI volume with a CT/MRI operator; save it with its geometry.

    Writes measurements.safetensors (key "y", sinograms or k-space), geometry.json (operator,
    sizes, noise, affine, intensity scale) and ground_truth.nii.gz (the measured volume with its
    affine), which `polydiff medical reconstruct measurements=<this folder>` reads back.
    """
    from polydiff.medical.measurements import save_measurements

    meas = _simulate(cfg, _ground_truth(cfg))
    save_measurements(run_dir, meas)
    log.info("measured %s: -> %s", meas.geometry["source"], tuple(meas.y.shape))


@verb("train")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train the 2-D slice diffusion prior on phantom or real-anatomy slices (-> <run>/model).

    Runs polydiff.medical.prior.train_prior (VP path, eps prediction, EMA) through
    polydiff.core.train; rerun with the same hydra.run.dir to resume from
    train/checkpoints/last.ckpt. Use the exported folder as `reconstruct prior=<run>/model`.
    """
    from polydiff.core.errors import check_number
    from polydiff.medical.prior import PriorConfig, train_prior

    t = cfg.train
    for key in ("steps", "batch_size", "checkpoint_every", "lr"):
        check_number(f"train.{key}", t[key], positive=True)
    if check_number("train.ema", t.ema, minimum=0) >= 1:
        raise ConfigError(f"train.ema must be < 1 (an EMA decay), got {t.ema!r}")
    recipe = {"batch_size": t.batch_size, "lr": t.lr, "warmup_steps": t.warmup}
    recipe |= {"ema_decay": t.ema, "max_steps": t.steps, "checkpoint_every": t.checkpoint_every}
    try:
        config = PriorConfig(**cfg.prior, seed=cfg.seed, **recipe)
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(str(err).strip("'\"")) from None
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    train_prior(config, run_dir / "train", export_to=run_dir / "model", **trainer)
    log.info("prior exported to %s", run_dir / "model")


@verb("reconstruct")
def reconstruct(cfg: DictConfig, run_dir: Path) -> None:
    """Reconstruct a volume from measurements (or from a NIfTI/phantom measured on the fly).

    Methods (polydiff.medical.reconstruction): back_projection | adjoint | fbp | cg | tv_admm
    and, with a slice prior, dds | dps | red_diff | diffusion_mbir (prior=null: the shipped
    real-anatomy prior for an input volume, the phantom prior of the slice size for a phantom).
    `fit=` brings an input volume of any size to the prior's slices (auto | none | crop_pad |
    resample; the output's affine follows). Writes reconstruction.nii.gz
    (the input's affine and units), reconstruction.json (method, NFE, seconds, parameters with
    nulls filled per modality) and, with a known ground truth, metrics.json (PSNR / SSIM).
    """
    from polydiff.core.io import atomic_write_json
    from polydiff.medical.data import save_nifti
    from polydiff.medical.measurements import load_measurements
    from polydiff.medical.reconstruction import metrics_json, reconstruction_method

    with _config_errors(f"method={cfg.method!r}: "):
        needs_prior = reconstruction_method(cfg.method).needs_prior
    if cfg.measurements is not None:
        if cfg.input is not None:
            raise ConfigError("give either measurements=<folder> or input=<NIfTI>, not both")
        with _config_errors(f"measurements={cfg.measurements}: "):
            meas = load_measurements(_path(cfg.measurements, "measurements"))
    else:
        meas = _simulate(cfg, _ground_truth(cfg, _fit_shape(cfg, needs_prior)))
    real = _is_real(meas.geometry["source"])
    prior, folder = _prior(cfg, meas.image_size, real) if needs_prior else (None, None)
    rec = _reconstruct(cfg, cfg.method, prior, meas)
    volume = meas.to_volume(rec.x)
    save_nifti(volume, run_dir / "reconstruction.nii.gz")
    info = {"method": cfg.method, "nfe": rec.nfe, "seconds": rec.seconds}
    info["validated_on"] = "real anatomy" if real else "phantoms"  # where nulls were picked
    info |= {"geometry": meas.geometry, **({"params": rec.options} if rec.options else {})}
    info |= {"prior": str(folder)} if folder is not None else {}
    atomic_write_json(run_dir / "reconstruction.json", info)
    if meas.truth is not None:
        metrics = metrics_json(volume.data, meas.truth.data)
        atomic_write_json(run_dir / "metrics.json", metrics)
        log.info("%s: PSNR %.2f dB, SSIM %.3f", cfg.method, metrics["psnr"], metrics["ssim"])
    log.info("%s: %d NFE, %.1f s", cfg.method, rec.nfe, rec.seconds)


@verb("evaluate")
def evaluate(cfg: DictConfig, run_dir: Path) -> None:
    """PSNR and SSIM of a reconstruction NIfTI against the ground truth: metrics.json.

    Volume PSNR and 3-D SSIM, and the means of the 2-D slice scores along the axial, coronal and
    sagittal axes (data range of the ground truth), as in polydiff.medical.metrics.
    """
    import numpy as np

    from polydiff.core.io import atomic_write_json
    from polydiff.medical.data import load_nifti
    from polydiff.medical.reconstruction import metrics_json

    options = ("reconstruction", "ground_truth")
    for option in options:
        if cfg[option] is None:
            raise ConfigError(f"{option}=<NIfTI file> is required")
    paths = [_path(cfg[option], option) for option in options]
    with _config_errors():  # the library's errors name the file
        rec, gt = (load_nifti(path) for path in paths)
    if rec.data.shape != gt.data.shape:
        shapes = f"{tuple(rec.data.shape)} != ground_truth shape {tuple(gt.data.shape)}"
        raise ConfigError(f"reconstruction shape {shapes}")
    if not np.allclose(rec.affine, gt.affine, atol=1e-4):
        log.warning("the two volumes have different affines; comparing voxel by voxel anyway")
    metrics = metrics_json(rec.data, gt.data, per_slice=cfg.per_slice)
    metrics |= {"reconstruction": str(paths[0]), "ground_truth": str(paths[1])}
    atomic_write_json(run_dir / "metrics.json", metrics)
    log.info("PSNR %.2f dB, SSIM %.4f", metrics["psnr"], metrics["ssim"])


@verb("prior-quality")
def prior_quality(cfg: DictConfig, run_dir: Path) -> None:
    """How good is a slice prior: its Tweedie denoising PSNR on held-out slices vs oracle TV.

    Adds noise of std s = sigma/alpha (noise_levels) to the non-empty axial slices of a held-out
    volume (the validation phantom, or input=vol.nii.gz), denoises them with the prior's x0
    estimate (one network evaluation per level) and with 2-D TV (Chambolle) at the best of
    tv_weights (an oracle), and writes metrics.json and quality.md (PSNR per level, in dB).
    """
    from polydiff.core.io import atomic_write_json, atomic_write_text
    from polydiff.medical.prior_quality import nonempty_slices, prior_denoising_psnr

    truth = _ground_truth(cfg)
    prior, folder = _prior(cfg, truth.x01.shape[-2:], _is_real(truth.source))
    with _config_errors():
        slices = nonempty_slices(truth.x01, cfg.threshold, cfg.max_slices)
        levels, weights = list(cfg.noise_levels or []), list(cfg.tv_weights or [])
        clip = None if cfg.clip is None else list(cfg.clip)
        quality = prior_denoising_psnr(prior, slices, levels, weights, cfg.seed, clip)
    prior_name = f"shipped {folder.name}" if cfg.prior is None else str(folder)
    payload = {"prior": prior_name, "source": truth.source, **quality.to_dict()}
    atomic_write_json(run_dir / "metrics.json", payload)
    header = quality.describe(prior_name, truth.source)
    atomic_write_text(run_dir / "quality.md", f"{header}\n\n{quality.markdown()}\n")
    log.info("%s\n%s", header, quality.markdown())


@demo_stage(quick=("dds.steps=5", "tv_admm.n_iter=15"))
@verb("compare")
def compare(cfg: DictConfig, run_dir: Path) -> StageResult:
    """Sparse-view CT of one phantom: FBP, TV-ADMM and DDS (shipped prior) side by side.

    Measures the held-out phantom with `operator.*` (8 views by default), reconstructs it with
    FBP, 3-D TV-ADMM and DDS, and writes metrics.json (PSNR / SSIM / seconds / NFE per method),
    montage.png (centre slices along the three axes) and each reconstruction as NIfTI.
    """
    from polydiff.core.io import atomic_write_json, nan_to_none
    from polydiff.medical.data import Volume, save_nifti
    from polydiff.medical.plots import plot_centre_slices
    from polydiff.medical.reconstruction import scores_table

    if cfg.operator.kind not in ("parallel", "limited_angle", "fan"):
        raise ConfigError(f"operator.kind={cfg.operator.kind!r}: compare runs FBP, so CT only")
    meas = _simulate(cfg, truth := _ground_truth(cfg))
    prior = _prior(cfg, meas.image_size, _is_real(truth.source))[0]
    recs: dict[str, Tensor] = {}  # by method, and their scores:
    metrics: dict[str, dict[str, Any]] = {}
    for name in ("fbp", "tv_admm", "dds"):
        rec = _reconstruct(cfg, name, prior, meas)  # classical methods ignore the prior
        recs[name], metrics[name] = rec.x.detach().float(), nan_to_none(rec.scores(truth.x01))
        save_nifti(Volume(recs[name], truth.volume.affine), run_dir / f"{name}.nii.gz")
        log.info("%s: %s", name, metrics[name])
    payload = {"methods": metrics, "geometry": meas.geometry}
    atomic_write_json(run_dir / "metrics.json", payload)
    titles = {k: f"{v['psnr']:.1f} dB" for k, v in metrics.items()}
    plot_centre_slices(run_dir / "montage.png", {"ground truth": truth.x01, **recs}, titles)
    markdown = (
        f"{meas.geometry['source']}, {cfg.operator.kind} CT with {cfg.operator.n_views} views, "
        f"noise std {cfg.noise_std}; DDS with the shipped slice prior.\n\n{scores_table(metrics)}"
    )
    headline = {f"{k} PSNR": round(v["psnr"], 2) for k, v in metrics.items()}
    headline["DDS SSIM"] = round(metrics["dds"]["ssim"], 3)
    montage = ("Centre slices: ground truth, FBP, TV-ADMM, DDS", run_dir / "montage.png")
    return StageResult(headline, markdown, [montage], payload)
