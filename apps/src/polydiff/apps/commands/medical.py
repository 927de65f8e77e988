"""Medical imaging: 3-D CT and MRI reconstruction with 2-D diffusion priors."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

    from polydiff.medical.data import Volume
    from polydiff.medical.data.intensity import IntensityScale
    from polydiff.medical.operators.base import LinearOperator
    from polydiff.medical.solvers import SlicePrior

log = logging.getLogger(__name__)

OPERATOR_KINDS = ("parallel", "limited_angle", "fan", "rotate_sum", "mri")
CLASSICAL = ("back_projection", "fbp", "cg", "tv_admm")
DIFFUSION = ("dds", "dps", "red_diff", "diffusion_mbir")
GEOMETRY = "geometry.json"
MEASUREMENTS = "measurements.safetensors"
GROUND_TRUTH = "ground_truth.nii.gz"


# ----------------------------------------------------------------------------- shared helpers


def _path(value: Any, option: str, must_exist: bool = True) -> Path:
    """An option's path, relative to the directory `polydiff` was started in."""
    from hydra.utils import to_absolute_path

    path = Path(to_absolute_path(str(value)))
    if must_exist and not path.exists():
        raise ConfigError(f"{option}={value}: no such file or folder")
    return path


def _load_volume(value: Any, option: str) -> Volume:
    from polydiff.medical.data import load_nifti

    try:
        return load_nifti(_path(value, option))
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"{option}: {err}") from None


def operator_kwargs(op_cfg: DictConfig) -> dict[str, Any]:
    """The `make_operator` keyword arguments that the operator kind `op_cfg.kind` uses."""
    kind = op_cfg.kind
    if kind not in OPERATOR_KINDS:
        raise ConfigError(f"operator.kind={kind!r}: choose one of {', '.join(OPERATOR_KINDS)}")
    if kind == "mri":
        return {"mask": op_cfg.mask, "acceleration": op_cfg.acceleration, "seed": op_cfg.seed}
    if op_cfg.n_views < 1:
        raise ConfigError(f"operator.n_views must be >= 1, got {op_cfg.n_views}")
    if kind == "limited_angle":
        return {"n_views": op_cfg.n_views, "angle_range_deg": op_cfg.angle_range_deg}
    return {"n_views": op_cfg.n_views}


def build_operator(kind: str, image_size: list[int], kwargs: dict[str, Any]) -> LinearOperator:
    from polydiff.medical.operators import make_operator

    try:
        return make_operator(kind, tuple(image_size), **kwargs)
    except ValueError as err:
        raise ConfigError(f"operator {kind} {kwargs}: {err}") from None


def _ground_truth(cfg: DictConfig) -> tuple[Volume, Tensor, IntensityScale, str]:
    """The volume to measure (input units, with affine), its [0, 1] version, the scale, source."""
    import numpy as np
    import torch

    from polydiff.medical.data import Volume, normalize, random_ellipsoids, shepp_logan_3d
    from polydiff.medical.data.intensity import IntensityScale

    if cfg.input is not None:
        vol = _load_volume(cfg.input, "input")
        if cfg.intensity not in ("minmax", "percentile"):
            raise ConfigError(f"intensity={cfg.intensity!r}: choose minmax or percentile")
        x01, scale = normalize(vol.data, cfg.intensity)
        return vol, x01, scale, str(_path(cfg.input, "input"))
    ph = cfg.phantom
    if ph.size < 8:
        raise ConfigError(f"phantom.size must be >= 8, got {ph.size}")
    if ph.kind == "shepp_logan":
        x = shepp_logan_3d(ph.size, seed=ph.seed)
    elif ph.kind == "ellipsoids":
        x = random_ellipsoids(ph.size, seed=ph.seed)
    else:
        raise ConfigError(f"phantom.kind={ph.kind!r}: choose shepp_logan or ellipsoids")
    source = f"phantom {ph.kind} size {ph.size} seed {ph.seed}"
    return Volume(x, np.eye(4)), x.to(torch.float32), IntensityScale(0.0, 1.0), source


def simulate_measurements(cfg: DictConfig) -> dict[str, Any]:
    """Ground truth -> operator -> (noisy) measurements, with everything needed to redo it."""
    import torch

    kwargs = operator_kwargs(cfg.operator)
    if cfg.noise_std < 0:
        raise ConfigError(f"noise_std must be >= 0, got {cfg.noise_std}")
    vol, x01, scale, source = _ground_truth(cfg)
    image_size = list(vol.data.shape[-2:])
    op = build_operator(cfg.operator.kind, image_size, kwargs)
    y = op.measure(x01, noise_std=cfg.noise_std, generator=torch.Generator().manual_seed(cfg.seed))
    geometry = {
        "operator": {"kind": cfg.operator.kind, **kwargs},
        "image_size": image_size,
        "volume_shape": list(vol.data.shape),
        "noise_std": float(cfg.noise_std),
        "seed": int(cfg.seed),
        "affine": vol.affine.tolist(),
        "scale": {"low": scale.low, "high": scale.high},
        "source": source,
    }
    return {"gt": vol, "x01": x01, "scale": scale, "op": op, "y": y, "geometry": geometry}


def _save_measurements(folder: Path, y: Tensor, geometry: dict[str, Any]) -> None:
    import torch

    from polydiff.core.io import atomic_save_safetensors, atomic_write_json

    complex_y = torch.is_complex(y)
    stored = torch.view_as_real(y) if complex_y else y  # safetensors has no complex dtype
    atomic_save_safetensors(folder / MEASUREMENTS, {"y": stored}, {"complex": str(complex_y)})
    atomic_write_json(folder / GEOMETRY, geometry)


def load_measurements(folder: Path) -> tuple[Tensor, dict[str, Any], LinearOperator]:
    """Measurements, geometry and the rebuilt operator from a `simulate` folder."""
    import torch

    from polydiff.core.io import load_safetensors, read_json, safetensors_metadata

    for name in (GEOMETRY, MEASUREMENTS):
        if not (folder / name).is_file():
            raise ConfigError(f"measurements={folder}: missing {name} (write it with simulate)")
    try:
        geometry = read_json(folder / GEOMETRY)
        y = load_safetensors(folder / MEASUREMENTS)["y"]
        complex_y = safetensors_metadata(folder / MEASUREMENTS).get("complex") == "True"
        op_cfg = dict(geometry["operator"])
        kind, image_size = op_cfg.pop("kind"), geometry["image_size"]
    except (ValueError, KeyError) as err:
        raise ConfigError(f"measurements={folder}: unreadable ({err})") from None
    y = torch.view_as_complex(y.contiguous()) if complex_y else y
    op = build_operator(kind, image_size, op_cfg)
    if y.dim() != 1 + len(op.out_shape) or tuple(y.shape[1:]) != tuple(op.out_shape):
        raise ConfigError(
            f"{folder / MEASUREMENTS}: measurements of shape {tuple(y.shape)} do not fit the "
            f"{kind} operator, which expects (D, {', '.join(map(str, op.out_shape))})"
        )
    return y, geometry, op


# ----------------------------------------------------------------------------- simulate


@verb("simulate")
def simulate(cfg: DictConfig, run_dir: Path) -> None:
    """Measure a phantom or a NIfTI volume with a CT/MRI operator; save it with its geometry.

    Writes measurements.safetensors (key "y", sinograms or k-space), geometry.json (operator,
    sizes, noise, affine, intensity scale) and ground_truth.nii.gz (the measured volume with its
    affine), which `polydiff medical reconstruct measurements=<this folder>` reads back.
    """
    from polydiff.medical.data import save_nifti

    sim = simulate_measurements(cfg)
    _save_measurements(run_dir, sim["y"], sim["geometry"])
    save_nifti(sim["gt"], run_dir / GROUND_TRUTH)
    log.info(
        "measured %s: %s -> %s",
        sim["geometry"]["source"],
        tuple(sim["x01"].shape),
        tuple(sim["y"].shape),
    )


# ----------------------------------------------------------------------------- train


@verb("train")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train the 2-D slice diffusion prior on phantom slices (exported to <run>/model).

    Runs polydiff.medical.prior.train_prior (VP path, eps prediction, EMA) through
    polydiff.core.train; rerun with the same hydra.run.dir to resume from
    train/checkpoints/last.ckpt. Use the exported folder as `reconstruct prior=<run>/model`.
    """
    from polydiff.medical.prior import PriorConfig, train_prior

    p = cfg.prior
    try:
        config = PriorConfig(
            image_size=p.image_size,
            unet=p.unet,
            data_kind=p.data_kind,
            n_volumes=p.n_volumes,
            seed=cfg.seed,
            batch_size=cfg.train.batch_size,
            lr=cfg.train.lr,
            warmup_steps=cfg.train.warmup,
            ema_decay=cfg.train.ema,
            max_steps=cfg.train.steps,
            checkpoint_every=cfg.train.checkpoint_every,
        )
        config.unet_config()  # an unknown preset fails here, before any data is made
    except (ValueError, KeyError) as err:
        raise ConfigError(str(err).strip("'\"")) from None
    if p.data_kind not in ("shepp_logan", "ellipsoids"):
        raise ConfigError(f"prior.data_kind={p.data_kind!r}: choose shepp_logan or ellipsoids")
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    train_prior(config, run_dir / "train", export_to=run_dir / "model", **trainer)
    log.info("prior exported to %s", run_dir / "model")


# ----------------------------------------------------------------------------- reconstruct


def _classical(
    method: str, op: LinearOperator, y: Tensor, cfg: DictConfig
) -> tuple[Tensor, dict[str, Any]]:
    """A classical reconstruction and the options it ran with."""
    from polydiff.medical import baselines
    from polydiff.medical.operators.ct import FanBeamCT, ParallelBeamCT

    if method == "back_projection":
        return baselines.back_projection(op, y), {}
    if method == "fbp":
        if not isinstance(op, ParallelBeamCT | FanBeamCT):
            raise ConfigError("method=fbp needs a parallel, limited_angle or fan CT operator")
        return baselines.fbp(op, y), {}
    if method == "cg":
        return baselines.cg_least_squares(op, y, None, cfg.cg.n_iter), {"n_iter": cfg.cg.n_iter}
    return _tv_admm(op, y, cfg.tv_admm)


def _tv_admm(op: LinearOperator, y: Tensor, tv_cfg: DictConfig) -> tuple[Tensor, dict[str, Any]]:
    """3-D TV-ADMM with lam and rho relative to ||A||^2 (as the diffusion solvers' penalties);
    returns the reconstruction and the options used (relative units, nulls filled per
    modality), which reconstruction.json records."""
    from polydiff.medical import baselines
    from polydiff.medical.solvers import operator_norm2

    options = _with_validated("tv_admm", op, OmegaConf.to_container(tv_cfg, resolve=True))
    norm2 = operator_norm2(op)
    absolute = {**options, "lam": options["lam"] * norm2, "rho": options["rho"] * norm2}
    return baselines.tv_admm(op, y, **absolute), options


def _with_validated(method: str, op: LinearOperator, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with every null that the method's validated parameters for the operator's
    modality fill (sparse-view CT, limited-angle CT, MRI; polydiff.medical.solvers.validated)."""
    from polydiff.medical.solvers import validated_params

    picks = validated_params(method, op)
    return {k: picks[k] if v is None and k in picks else v for k, v in options.items()}


def _load_prior(cfg: DictConfig, image_size: list[int]) -> SlicePrior:
    from polydiff.medical.prior import load_prior, prior_image_size, shipped_prior_dir

    if cfg.prior is None:  # the prior shipped with polydiff-medical for this slice size
        try:
            folder = shipped_prior_dir(image_size=image_size[0])
        except FileNotFoundError as err:
            raise ConfigError(f"prior=null: {err}; pass prior=<exported prior folder>") from None
    else:
        folder = _path(cfg.prior, "prior")
    try:
        size = prior_image_size(folder)
        prior = load_prior(folder, chunk=cfg.prior_chunk)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise ConfigError(f"prior={cfg.prior}: not an exported slice prior ({err})") from None
    if list(image_size) != [size, size]:
        raise ConfigError(
            f"prior={cfg.prior} was trained on {size}x{size} slices; the volume's slices are "
            f"{image_size[0]}x{image_size[1]}"
        )
    return prior


def _diffusion(
    method: str, prior: SlicePrior, op: LinearOperator, y: Tensor, cfg: DictConfig
) -> tuple[Tensor, int, dict[str, Any]]:
    """A diffusion solver's reconstruction, its NFE and the options it ran with (nulls
    filled with the values validated for the operator's modality)."""
    import torch

    from polydiff.medical.solvers import SOLVERS

    options = _with_validated(method, op, OmegaConf.to_container(cfg[method], resolve=True))
    if options.get("clip") is not None:
        options["clip"] = tuple(options["clip"])
    generator = torch.Generator().manual_seed(cfg.seed)
    rec = SOLVERS[method](prior, op, y, generator=generator, **options)
    return rec.x, rec.nfe, options


def _inputs(cfg: DictConfig) -> tuple[Tensor, LinearOperator, dict[str, Any], Volume | None]:
    """(measurements, operator, geometry, ground truth or None) from a folder or a simulation."""
    from polydiff.medical.data import load_nifti

    if cfg.measurements is not None:
        if cfg.input is not None:
            raise ConfigError("give either measurements=<folder> or input=<NIfTI>, not both")
        folder = _path(cfg.measurements, "measurements")
        y, geometry, op = load_measurements(folder)
        gt = load_nifti(folder / GROUND_TRUTH) if (folder / GROUND_TRUTH).is_file() else None
        return y, op, geometry, gt
    sim = simulate_measurements(cfg)
    return sim["y"], sim["op"], sim["geometry"], sim["gt"]


@verb("reconstruct")
def reconstruct(cfg: DictConfig, run_dir: Path) -> None:
    """Reconstruct a volume from measurements (or from a NIfTI/phantom measured on the fly).

    Methods: back_projection | fbp | cg | tv_admm (classical) and dds | dps | red_diff |
    diffusion_mbir (a slice prior from `polydiff medical train`). Writes reconstruction.nii.gz
    with the input's affine and intensity units, reconstruction.json (method, NFE, seconds,
    parameters; nulls filled with the values validated for the operator's modality) and, when
    the ground truth is known, metrics.json (PSNR / SSIM per axis and for the volume).
    """
    import numpy as np
    import torch

    from polydiff.core.io import atomic_write_json
    from polydiff.medical.data import Volume, save_nifti
    from polydiff.medical.data.intensity import IntensityScale

    if cfg.method not in CLASSICAL + DIFFUSION:
        raise ConfigError(
            f"method={cfg.method!r}: choose one of {', '.join(CLASSICAL + DIFFUSION)}"
        )
    torch.manual_seed(cfg.seed)
    y, op, geometry, gt = _inputs(cfg)
    prior = _load_prior(cfg, geometry["image_size"]) if cfg.method in DIFFUSION else None
    start = time.perf_counter()
    if prior is None:
        (rec01, params), nfe = _classical(cfg.method, op, y, cfg), 0
    else:
        rec01, nfe, params = _diffusion(cfg.method, prior, op, y, cfg)
    seconds = time.perf_counter() - start
    scale = IntensityScale(**geometry["scale"])
    affine = np.asarray(geometry["affine"], dtype=np.float64)
    save_nifti(Volume(scale.inverse(rec01.detach()), affine), run_dir / "reconstruction.nii.gz")
    info = {"method": cfg.method, "nfe": nfe, "seconds": seconds, "geometry": geometry}
    if params:  # the options the method ran with (nulls filled per modality)
        info["params"] = params
    atomic_write_json(run_dir / "reconstruction.json", info)
    if gt is not None:
        metrics = _metrics(scale.inverse(rec01.detach()), gt.data)
        atomic_write_json(run_dir / "metrics.json", metrics)
        log.info("%s: PSNR %.2f dB, SSIM %.3f", cfg.method, metrics["psnr"], metrics["ssim"])
    log.info("%s: %d NFE, %.1f s", cfg.method, nfe, seconds)


# ----------------------------------------------------------------------------- evaluate


def _metrics(x: Tensor, gt: Tensor, per_slice: bool = False) -> dict[str, Any]:
    from polydiff.medical.metrics import volume_metrics

    m = volume_metrics(x.to(gt.dtype), gt)
    out: dict[str, Any] = m.as_dict()
    if per_slice:  # JSON has no infinity: slices equal to the ground truth get null
        out["per_slice"] = {
            axis: {k: [v if math.isfinite(v) else None for v in vals] for k, vals in d.items()}
            for axis, d in m.per_slice.items()
        }
    return {
        k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in out.items()
    }


@verb("evaluate")
def evaluate(cfg: DictConfig, run_dir: Path) -> None:
    """PSNR and SSIM of a reconstruction NIfTI against the ground truth: metrics.json.

    Volume PSNR and 3-D SSIM, and the means of the 2-D slice scores along the axial, coronal and
    sagittal axes (data range of the ground truth), as in polydiff.medical.metrics.
    """
    from polydiff.core.io import atomic_write_json

    for option in ("reconstruction", "ground_truth"):
        if cfg[option] is None:
            raise ConfigError(f"{option}=<NIfTI file> is required")
    rec = _load_volume(cfg.reconstruction, "reconstruction")
    gt = _load_volume(cfg.ground_truth, "ground_truth")
    if rec.data.shape != gt.data.shape:
        raise ConfigError(
            f"reconstruction shape {tuple(rec.data.shape)} != ground_truth shape "
            f"{tuple(gt.data.shape)}"
        )
    if not _same_affine(rec.affine, gt.affine):
        log.warning("the two volumes have different affines; comparing voxel by voxel anyway")
    metrics = _metrics(rec.data, gt.data, per_slice=cfg.per_slice)
    metrics["reconstruction"] = str(_path(cfg.reconstruction, "reconstruction"))
    metrics["ground_truth"] = str(_path(cfg.ground_truth, "ground_truth"))
    atomic_write_json(run_dir / "metrics.json", metrics)
    log.info("PSNR %.2f dB, SSIM %.4f", metrics["psnr"], metrics["ssim"])


def _same_affine(a: np.ndarray, b: np.ndarray) -> bool:
    import numpy as np

    return bool(np.allclose(a, b, atol=1e-4))


# ----------------------------------------------------------------------------- prior-quality


@verb("prior-quality")
def prior_quality(cfg: DictConfig, run_dir: Path) -> None:
    """How good is a slice prior: its Tweedie denoising PSNR on held-out slices vs oracle TV.

    Adds noise of std s = sigma/alpha (noise_levels) to the non-empty axial slices of a held-out
    volume (the validation phantom, or input=vol.nii.gz), denoises them with the prior's x0
    estimate (one network evaluation per level) and with 2-D TV (Chambolle) at the best of
    tv_weights (an oracle), and writes metrics.json and quality.md (PSNR per level, in dB).
    """
    from polydiff.core.io import atomic_write_json, atomic_write_text
    from polydiff.medical.prior import shipped_prior_dir
    from polydiff.medical.prior_quality import nonempty_slices, prior_denoising_psnr

    if not cfg.noise_levels or min(cfg.noise_levels) <= 0:
        raise ConfigError(f"noise_levels must be values > 0, got {list(cfg.noise_levels or [])}")
    if not cfg.tv_weights or min(cfg.tv_weights) <= 0:
        raise ConfigError(f"tv_weights must be values > 0, got {list(cfg.tv_weights or [])}")
    if cfg.max_slices is not None and cfg.max_slices < 1:
        raise ConfigError(f"max_slices must be >= 1 or null, got {cfg.max_slices}")
    if cfg.clip is not None and (len(cfg.clip) != 2 or cfg.clip[0] >= cfg.clip[1]):
        raise ConfigError(f"clip must be [low, high] with low < high or null, got {cfg.clip}")
    _, x01, _, source = _ground_truth(cfg)
    prior = _load_prior(cfg, list(x01.shape[-2:]))
    try:
        slices = nonempty_slices(x01, cfg.threshold)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    if cfg.max_slices is not None and cfg.max_slices < slices.shape[0]:
        pick = _evenly_spaced(slices.shape[0], cfg.max_slices)
        slices = slices[pick]
    clip = None if cfg.clip is None else (float(cfg.clip[0]), float(cfg.clip[1]))
    start = time.perf_counter()
    quality = prior_denoising_psnr(
        prior, slices, list(cfg.noise_levels), list(cfg.tv_weights), cfg.seed, clip
    )
    seconds = time.perf_counter() - start
    if cfg.prior is None:
        prior_name = f"shipped {shipped_prior_dir(image_size=int(x01.shape[-1])).name}"
    else:
        prior_name = str(_path(cfg.prior, "prior"))
    payload = {"prior": prior_name, "source": source, "seconds": seconds, **quality.to_dict()}
    atomic_write_json(run_dir / "metrics.json", payload)
    table = quality.markdown()
    header = (
        f"Tweedie denoising PSNR (dB) of the {prior_name} prior on {quality.n_slices} non-empty "
        f"slices of {source} (noise seed {cfg.seed}), against 2-D TV denoising with an oracle "
        "weight."
    )
    atomic_write_text(run_dir / "quality.md", f"{header}\n\n{table}\n")
    log.info("%s\n%s", header, table)


def _evenly_spaced(n: int, k: int) -> list[int]:
    """``k`` evenly spaced indices into ``range(n)`` (first and last included)."""
    if k == 1:
        return [n // 2]
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


# ----------------------------------------------------------------------------- compare (demo)

AXIS_NAMES = ("axial", "coronal", "sagittal")


@demo_stage(quick=("dds.steps=5", "tv_admm.n_iter=15"))
@verb("compare")
def compare(cfg: DictConfig, run_dir: Path) -> StageResult:
    """Sparse-view CT of one phantom: FBP, TV-ADMM and DDS (shipped prior) side by side.

    Measures the held-out phantom with `operator.*` (8 views by default), reconstructs it with
    FBP, 3-D TV-ADMM and DDS, and writes metrics.json (PSNR / SSIM / seconds / NFE per method),
    montage.png (axial / coronal / sagittal centre slices: ground truth, FBP, TV-ADMM, DDS) and
    each reconstruction as NIfTI.
    """
    import torch

    from polydiff.core.io import atomic_write_json
    from polydiff.medical.data import Volume, save_nifti

    if cfg.operator.kind not in ("parallel", "limited_angle", "fan"):
        raise ConfigError(f"operator.kind={cfg.operator.kind!r}: compare runs FBP, so CT only")
    sim = simulate_measurements(cfg)
    op, y, gt = sim["op"], sim["y"], sim["x01"]
    prior = _load_prior(cfg, sim["geometry"]["image_size"])
    recs: dict[str, Tensor] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for method in ("fbp", "tv_admm", "dds"):
        torch.manual_seed(cfg.seed)
        start = time.perf_counter()
        if method == "dds":
            x, nfe, _ = _diffusion(method, prior, op, y, cfg)
        else:
            (x, _), nfe = _classical(method, op, y, cfg), 0
        seconds = time.perf_counter() - start
        recs[method] = x.detach().float()
        m = _metrics(recs[method], gt)
        metrics[method] = {"psnr": m["psnr"], "ssim": m["ssim"], "seconds": seconds, "nfe": nfe}
        save_nifti(Volume(recs[method], sim["gt"].affine), run_dir / f"{method}.nii.gz")
        log.info("%s: PSNR %.2f dB, SSIM %.3f, %.1f s", method, m["psnr"], m["ssim"], seconds)
    payload = {"methods": metrics, "geometry": sim["geometry"]}
    atomic_write_json(run_dir / "metrics.json", payload)
    montage = run_dir / "montage.png"
    _plot_montage(montage, gt, recs, metrics)
    rows = [
        f"| {k} | {v['psnr']:.2f} | {v['ssim']:.3f} | {v['seconds']:.1f} | {v['nfe']} |"
        for k, v in metrics.items()
    ]
    markdown = "\n".join(
        [
            f"{sim['geometry']['source']}, {cfg.operator.kind} CT with "
            f"{cfg.operator.n_views} views, noise std {cfg.noise_std}; DDS with the shipped "
            "slice prior.",
            "",
            "| method | PSNR (dB) | SSIM | seconds | NFE |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    headline = {f"{k} PSNR": round(v["psnr"], 2) for k, v in metrics.items()}
    headline["DDS SSIM"] = round(metrics["dds"]["ssim"], 3)
    return StageResult(
        headline, markdown, [("Centre slices: ground truth, FBP, TV-ADMM, DDS", montage)], payload
    )


def _plot_montage(
    path: Path, gt: Tensor, recs: dict[str, Tensor], metrics: dict[str, dict[str, Any]]
) -> None:
    """Rows: axial / coronal / sagittal centre slices; columns: ground truth, then methods."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polydiff.core.io import atomic_path

    columns = {"ground truth": gt, **recs}
    fig, axes = plt.subplots(3, len(columns), figsize=(2.2 * len(columns), 6.6), squeeze=False)
    for row, name in enumerate(AXIS_NAMES):
        for col, (label, vol) in enumerate(columns.items()):
            ax = axes[row, col]
            img = vol.movedim(row, 0)[vol.shape[row] // 2]
            ax.imshow(img.cpu().numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                extra = "" if label not in metrics else f"\n{metrics[label]['psnr']:.1f} dB"
                ax.set_title(f"{label}{extra}", fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
