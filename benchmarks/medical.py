"""3D CT / MRI reconstruction with a 2D slice diffusion prior against classical baselines.

Phase 1 (validation, per modality): a small hyperparameter sweep of every method on a
validation phantom (seed 900, disjoint from the prior's training seeds 0..63 and from the test
seed) for each modality: sparse-view CT (8 views), limited-angle CT (90 degrees) and MRI (x4,
uniform 1D mask with ACS); the best setting per method and modality is used in phase 2 on that
modality's tasks. Phase 2 (test): held-out phantoms (seed 1000) with 8-view and 4-view
sparse-view CT, 90-degree limited-angle CT, MRI x4 and x8, noiseless and noisy, plus MRI on a
real brain volume (nibabel's ``anatomical.nii``, resampled); PSNR / SSIM / seconds / NFE for
FBP (zero-filled for MRI), CG, TV-ADMM, DiffusionMBIR, DDS, DPS and RED-diff. Phase 3: sparse
vs grid_sample projector speed and accuracy against analytic projections (64^3).

``--real``: the real-anatomy run with the shipped anatomy prior at 64^3: every solver's
parameters picked on one real subject (nibabel's example4d), scored on another (dipy's
aniso_vox), both held out from the prior's training; stored as ``real`` in medical.json with
its own goals (about 40 min on one loaded thread).

``--size`` picks the volume size (64, the default, or 32, the default of --quick; the shipped
prior of that slice size, or ``--prior``). The 64^3 plan runs every task with a smaller sweep
(the costly samplers' parameters taken from the 32^3 run's per-modality picks; see PLANS). Each
size's run is stored under its size in docs/benchmarks/medical.json, and medical.md shows every
stored run. All penalty and step parameters are relative to ||A||^2
(polydiff.medical.solvers.common).
Run: `nox -s bench -- medical` (or `OMP_NUM_THREADS=1 python benchmarks/run.py medical
[--size 32] [--quick]`; 64^3 takes about 70 min on one thread, 32^3 about 12).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from polydiff.core.io import atomic_write_json, atomic_write_text
from polydiff.medical import measurements
from polydiff.medical.data import load_nifti, normalize, shepp_logan_3d
from polydiff.medical.data.anatomy import HELD_OUT, held_out_volume, normalized
from polydiff.medical.data.geometry import resample
from polydiff.medical.operators import LinearOperator, make_operator
from polydiff.medical.operators.ct import ParallelBeamCT, RotateSumCT
from polydiff.medical.prior import REAL_PRIOR, load_prior, prior_image_size, shipped_prior_dir
from polydiff.medical.prior_quality import nonempty_slices, prior_denoising_psnr
from polydiff.medical.reconstruction import NamedReconstruction, reconstruct
from polydiff.medical.solvers import SlicePrior

ROOT = Path(__file__).resolve().parents[1]
VALIDATION_SEED, TEST_SEED = 900, 1000
NOISE_REL = 0.02  # noise std as a fraction of the RMS of the non-zero noiseless measurements

# task -> (operator kind, operator kwargs)
OPERATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "ct8": ("parallel", {"n_views": 8}),
    "ct4": ("parallel", {"n_views": 4}),
    "la90": ("limited_angle", {"n_views": 30, "angle_range_deg": 90}),
    "mri4": ("mri", {"mask": "uniform1d", "acceleration": 4}),
    "mri8": ("mri", {"mask": "uniform1d", "acceleration": 8}),
}
# modality of each operator, and the operator each modality's parameters are validated on
MODALITY = {"ct8": "sparse_view", "ct4": "sparse_view", "la90": "limited_angle"}
MODALITY |= {"mri4": "mri", "mri8": "mri"}
VALIDATION_TASK = {"sparse_view": "ct8", "limited_angle": "la90", "mri": "mri4"}
METHODS = ("fbp", "cg", "tv_admm", "diffusion_mbir", "dds", "dds_100", "dps", "red_diff")
DIFFUSION = ("diffusion_mbir", "dds", "dds_100", "dps", "red_diff")

# Validation grids (relative units). TV-ADMM: rho fixed at 4e-3 ||A||^2, x >= 0.
GRID: dict[str, list[dict[str, Any]]] = {
    "tv_admm": [{"lam": v} for v in (6.25e-6, 2.5e-5, 1e-4, 4e-4, 1.6e-3)],
    "dds": [
        *({"rho": r, "lam": 0.01 * r, "grid": "uniform"} for r in (4e-3, 1.6e-2, 6.4e-2)),
        {"rho": 1.6e-2, "lam": 1.6e-4, "grid": "logsnr"},
        # the TV split restarted at every step (persistent: the paper's; stalls on MRI)
        {"rho": 1.6e-2, "lam": 1.6e-4, "grid": "logsnr", "persistent_split": False},
    ],
    # the TV split restarts at every step (the library default since session 4); 1 CG step per
    # diffusion step (the paper's, with 2000+ steps) leaves 100-step DiffusionMBIR far from the
    # data, several CG steps diverged with the paper's persistent split (docs/medical.md)
    "diffusion_mbir": [
        {"rho": 4e-3, "n_cg": 1},
        {"rho": 1.6e-2, "n_cg": 1},
        {"rho": 1.6e-2, "n_cg": 2},
        {"rho": 1.6e-3, "n_cg": 5},
        {"rho": 1.6e-2, "n_cg": 5},
    ],
    "dps": [{"zeta": z} for z in (0.5, 2.0, 8.0, 32.0)],
    "red_diff": [{"lam": 1.0, "lr": 0.01}, {"lam": 1.0, "lr": 0.003}],
}
NOISY_GRID = {"dds": [{"gamma": g} for g in (None, 10.0)]}
DEFAULTS = {"tv_admm": {"lam": 1e-4}}  # not swept, no 32^3 pick (--quick): the sparse-view value

# What each size runs. Steps (NFE budgets) are fixed, not tuned: DDS at 10x fewer NFE than
# DiffusionMBIR; dds_100 is DDS with its parameters tuned at 10 steps, run at 100 (DDS gains
# ~2 dB per doubling of the NFE on the validation phantom). "sweep": the methods validated at
# this size (the others take the per-modality picks of the 32^3 run stored in medical.json:
# the parameters are relative to ||A||^2, so they carry over across sizes).
ALL_TASKS = ("ct8", "ct4", "la90", "mri4", "mri8")
PLANS: dict[str, dict[str, Any]] = {
    "32": {
        "steps": {"dds": 10, "dds_100": 100, "diffusion_mbir": 100, "dps": 20, "red_diff": 30},
        "tasks": ALL_TASKS,
        "noisy": ALL_TASKS,
        "brain": ("mri4", "mri8"),
        "sweep": tuple(GRID),
    },
    # 64^3: ~8x the work per NFE; every task of 32^3, a smaller sweep (below).
    "64": {
        "steps": {"dds": 10, "dds_100": 100, "diffusion_mbir": 100, "dps": 20, "red_diff": 30},
        "tasks": ALL_TASKS,
        "noisy": ALL_TASKS,
        "brain": ("mri4", "mri8"),
        "sweep": {
            "sparse_view": ("tv_admm", "dds", "diffusion_mbir"),  # both goals read on ct8
            "limited_angle": ("tv_admm", "dds"),
            "mri": ("tv_admm", "dds"),
        },
        # the three best 32^3 settings on every modality
        "grid": {
            "diffusion_mbir": [
                {"rho": 1.6e-3, "n_cg": 5},
                {"rho": 1.6e-2, "n_cg": 5},
                {"rho": 1.6e-2, "n_cg": 2},
            ]
        },
    },
    "quick": {
        "steps": {"dds": 4, "dds_100": 8, "diffusion_mbir": 8, "dps": 4, "red_diff": 4},
        "tasks": ("ct8", "mri4"),
        "noisy": ("ct8",),
        "brain": (),
        "sweep": (),
    },
}


# ----------------------------------------------------------------------------- problems


def real_volume(size: int) -> torch.Tensor:
    """nibabel's ``anatomical.nii`` (a 2-mm T1 brain), axial slices first, resampled to size^3
    (trilinear) and min-max normalised to [0, 1]."""
    import nibabel

    path = Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii"
    vol = load_nifti(path).data.float().permute(2, 1, 0)  # RAS canonical: (z, y, x)
    vol = F.interpolate(vol[None, None], size=(size,) * 3, mode="trilinear", align_corners=False)
    return normalize(vol[0, 0].clamp_min(0), "minmax")[0]


def measure(
    op: LinearOperator, gt: torch.Tensor, noisy: bool, seed: int
) -> tuple[torch.Tensor, float]:
    """Measurements ``A gt`` (noisy: plus the library's noise, std ``NOISE_REL`` x the RMS of
    the non-zero noiseless measurements) and the noise std used."""
    return measurements.measure(op, gt, NOISE_REL if noisy else 0.0, relative=True, seed=seed)


# ----------------------------------------------------------------------------- methods


def run_method(
    method: str,
    op: LinearOperator,
    y: torch.Tensor,
    prior: SlicePrior,
    params: dict[str, Any],
    steps: dict[str, int],
    seed: int,
    picks: dict[str, Any] | None = None,
) -> NamedReconstruction:
    """One reconstruction in [0, 1] units by the library's named reconstruction: ``fbp`` is
    the zero-filled inverse FFT (the adjoint) for MRI, ``dds_100`` is DDS with more steps.
    ``start: "tv_admm"`` (DDS's warm start) is the TV-ADMM reconstruction with its parameters
    in ``picks`` (the library runs it first; its seconds are added to the method's)."""
    if isinstance(params.get("start"), str):
        params = {**params, "start_options": picks[params["start"]]}
    if method == "fbp":
        return reconstruct("fbp" if isinstance(op, ParallelBeamCT) else "adjoint", None, op, y)
    if method not in DIFFUSION:  # cg, tv_admm: the library's defaults (30 CG; rho 4e-3, ...)
        return reconstruct(method, None, op, y, **params)
    if method == "diffusion_mbir":  # predictor only: NFE = steps
        params = {"corrector_steps": 0, **params}
    g = torch.Generator().manual_seed(seed)
    name = "dds" if method == "dds_100" else method
    return reconstruct(name, prior, op, y, steps=steps[method], generator=g, **params)


def score(
    method: str,
    op: LinearOperator,
    y: torch.Tensor,
    gt: torch.Tensor,
    prior: SlicePrior,
    params: dict[str, Any],
    steps: dict[str, int],
    seed: int,
    picks: dict[str, Any] | None = None,
) -> dict[str, float]:
    return run_method(method, op, y, prior, params, steps, seed, picks).scores(gt)


def tune_modality(
    prior: SlicePrior,
    size: int,
    modality: str,
    plan: dict[str, Any],
    inherited: dict[str, dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Best parameters per method on the validation phantom measured by this modality's
    validation operator (DDS's gamma on its noisy version), and the sweep's record. Methods not
    swept at this size take ``inherited`` (the 32^3 run's picks) or the library defaults."""
    sweep = plan["sweep"].get(modality, ()) if isinstance(plan["sweep"], dict) else plan["sweep"]
    gt = shepp_logan_3d(size, seed=VALIDATION_SEED)
    kind, kw = OPERATORS[VALIDATION_TASK[modality]]
    op = make_operator(kind, size, **kw)
    y, _ = measure(op, gt, noisy=False, seed=VALIDATION_SEED)
    best: dict[str, dict[str, Any]] = {}
    record: dict[str, Any] = {}
    for method in GRID:
        grid = plan.get("grid", {}).get(method, GRID[method])
        if method not in sweep:
            best[method] = inherited.get(method, DEFAULTS.get(method, {}))
            continue
        if method == "diffusion_mbir":  # DDS's best TV threshold lam / rho, MBIR's own rho
            ratio = best["dds"]["lam"] / best["dds"]["rho"]
            grid = [{**p, "lam": p["rho"] * ratio} for p in grid]
        rows = []
        for params in grid:
            r = score(method, op, y, gt, prior, params, plan["steps"], seed=0)
            rows.append({"params": params, **r})
            print(f"  tune {modality} {method} {params}: {r['psnr']:.2f} dB", flush=True)
        record[method] = rows
        best[method] = max(rows, key=lambda r: r["psnr"])["params"]
    if "dds" not in sweep:
        best["dds_noisy"] = inherited.get("dds_noisy", {})
        return best, record
    y_noisy, _ = measure(op, gt, noisy=True, seed=VALIDATION_SEED)
    rows = []
    for extra in NOISY_GRID["dds"]:
        params = {**best["dds"], **extra}
        r = score("dds", op, y_noisy, gt, prior, params, plan["steps"], seed=0)
        rows.append({"params": params, **r})
        print(f"  tune {modality} dds noisy {params}: {r['psnr']:.2f} dB", flush=True)
    record["dds_noisy"] = rows
    best["dds_noisy"] = max(rows, key=lambda r: r["psnr"])["params"]
    return best, record


def tune(
    prior: SlicePrior, size: int, plan: dict[str, Any], inherited: dict[str, Any]
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, Any]]:
    """Per-modality parameters (modality -> method -> parameters) and the sweeps' records."""
    best, record = {}, {}
    for modality in VALIDATION_TASK:
        print(f"validation sweep: {modality}", flush=True)
        best[modality], record[modality] = tune_modality(
            prior, size, modality, plan, inherited.get(modality, {})
        )
    return best, record


def task_list(plan: dict[str, Any]) -> list[tuple[str, str, bool, bool]]:
    """(task name, operator, noisy, real brain volume) for every test task of the plan."""
    tasks = [(name, name, False, False) for name in plan["tasks"]]
    tasks += [(f"{name}-noisy", name, True, False) for name in plan["noisy"]]
    return tasks + [(f"{name}-brain", name, False, True) for name in plan["brain"]]


def run_tasks(
    prior: SlicePrior,
    size: int,
    best: dict[str, dict[str, dict[str, Any]]],
    plan: dict[str, Any],
    progress: Path | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Every test task x method: PSNR / SSIM / seconds / NFE, with the parameters picked on the
    task's modality."""
    phantom = shepp_logan_3d(size, seed=TEST_SEED)
    brain = real_volume(size) if plan["brain"] else None
    results: dict[str, dict[str, dict[str, float]]] = {}
    for task, op_name, noisy, is_brain in task_list(plan):
        kind, kw = OPERATORS[op_name]
        op = make_operator(kind, size, **kw)
        gt = brain if is_brain else phantom
        y, std = measure(op, gt, noisy, seed=TEST_SEED)
        picks = best[MODALITY[op_name]]
        results[task] = {}
        for method in METHODS:
            key = "dds" if method == "dds_100" else method
            params = picks.get("dds_noisy" if (key == "dds" and noisy) else key, {})
            r = score(method, op, y, gt, prior, params, plan["steps"], seed=0)
            results[task][method] = r
            print(
                f"{task:>12} {method:>15}: {r['psnr']:6.2f} dB  SSIM {r['ssim']:.3f}  "
                f"{r['seconds']:6.1f} s  NFE {r['nfe']}",
                flush=True,
            )
        results[task]["_noise_std"] = {"value": std}  # type: ignore[dict-item]
        if progress is not None:  # partial results survive a crash of a long run
            atomic_write_json(progress, results)
    return results


# ----------------------------------------------------------------------------- projector


def ball(size: int, radius: float, sub: int = 4) -> torch.Tensor:
    """A centred ball, ``sub^3``-supersampled so the voxels approximate the continuous ball."""
    c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    offsets = (torch.arange(sub, dtype=torch.float64) - (sub - 1) / 2) / sub
    vol = torch.zeros(size, size, size, dtype=torch.float64)
    for dz in offsets:
        for dy in offsets:
            for dx in offsets:
                zz, yy, xx = torch.meshgrid(c + dz, c + dy, c + dx, indexing="ij")
                vol += (xx**2 + yy**2 + zz**2 <= radius**2).double()
    return (vol / sub**3).float()


def chord_sinogram(size: int, radius: float, out_shape: tuple[int, int]) -> torch.Tensor:
    """The analytic parallel-beam projection of the ball, slice by slice: each slice is a
    centred disk of radius r_z, whose projection is the chord length 2 sqrt(r_z^2 - s^2)."""
    z = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    r2 = (radius**2 - z**2).clamp_min(0)
    s = torch.arange(out_shape[1], dtype=torch.float64) - (out_shape[1] - 1) / 2
    chord = 2 * torch.sqrt((r2[:, None] - s[None] ** 2).clamp_min(0))
    return chord[:, None, :].expand(size, *out_shape).float()


def gaussian_blob(size: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A centred isotropic Gaussian ``exp(-r^2 / (2 sigma^2))`` sampled at the voxel centres,
    and the z profile ``exp(-z^2 / (2 sigma^2))`` of its slices (a smooth, band-limited object
    on which the voxel grid itself adds almost no error)."""
    c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")
    vol = torch.exp(-(xx**2 + yy**2 + zz**2) / (2 * sigma**2))
    return vol.float(), torch.exp(-(c**2) / (2 * sigma**2))


def gaussian_sinogram(
    z_profile: torch.Tensor, sigma: float, out_shape: tuple[int, int]
) -> torch.Tensor:
    """Analytic projection of each slice's 2-D Gaussian: ``a_z sqrt(2 pi) sigma e^{-s^2/2s^2}``."""
    s = torch.arange(out_shape[1], dtype=torch.float64) - (out_shape[1] - 1) / 2
    line = math.sqrt(2 * math.pi) * sigma * torch.exp(-(s**2) / (2 * sigma**2))
    sino = z_profile[:, None] * line[None]
    return sino[:, None, :].expand(len(z_profile), *out_shape).float()


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def projector_speed(size: int, n_views: int, repeats: int) -> dict[str, Any]:
    """Forward + adjoint time, and relative errors against the analytic sinograms of a ball
    (sharp edges) and of a Gaussian blob (smooth)."""
    x = ball(size, 0.4 * size)
    sigma = size / 8
    blob, z_profile = gaussian_blob(size, sigma)
    out: dict[str, Any] = {"size": size, "n_views": n_views}
    for name, op in (
        ("sparse", ParallelBeamCT(size, n_views)),
        ("grid_sample", RotateSumCT(size, n_views)),
    ):
        y = op.forward(x)
        exact = chord_sinogram(size, 0.4 * size, op.out_shape)
        err = float((y - exact).norm() / exact.norm())
        exact_blob = gaussian_sinogram(z_profile, sigma, op.out_shape)
        err_blob = float((op.forward(blob) - exact_blob).norm() / exact_blob.norm())
        fwd = best_time(lambda op=op: op.forward(x), repeats)
        adj = best_time(lambda op=op, y=y: op.adjoint(y), repeats)
        out[name] = {
            "forward_s": fwd,
            "adjoint_s": adj,
            "rel_error": err,
            "rel_error_smooth": err_blob,
        }
    out["speedup_forward"] = out["grid_sample"]["forward_s"] / out["sparse"]["forward_s"]
    out["speedup_adjoint"] = out["grid_sample"]["adjoint_s"] / out["sparse"]["adjoint_s"]
    return out


# ----------------------------------------------------------------------------- real anatomy
# Real subjects held out from the anatomy prior (polydiff.medical.data.anatomy.HELD_OUT):
# every parameter is picked on the tuning subject (nibabel's example4d), the table reports the
# test subject (dipy's aniso_vox), both resampled to 64^3 and mapped to [0, 1] by percentiles.

REAL_METHODS = ("fbp", "cg", "tv_admm", "diffusion_mbir", "dds", "dps", "red_diff")
REAL_DIFFUSION = ("diffusion_mbir", "dds", "dps", "red_diff")
# --real-add dds_100: DDS with the tuning subject's pick at 100 steps, added to a stored run
REAL_ADDED = {"dds_100": ("dds", 100)}
REAL_STEPS = {"dds": 50, "diffusion_mbir": 30, "dps": 10, "red_diff": 20}
REAL_TUNE_STEPS = {**REAL_STEPS, "dds": 10}  # the DDS sweep runs at 10 steps, the test at 50
# swept on the tuning subject; the other solvers take the 64^3 phantom run's per-modality picks
# (validated on the phantom: CPU time on the shared machine allowed no more)
REAL_GRID: dict[str, list[dict[str, Any]]] = {
    "tv_admm": [{"lam": v} for v in (3.1e-6, 6.25e-6, 1.25e-5, 2.5e-5, 5e-5, 1e-4, 2e-4, 4e-4)],
    "dds": [
        {"rho": 1.6e-2, "lam": 1.6e-4},  # the phantom pick (5 CG steps per diffusion step)
        {"rho": 1.6e-2, "lam": 1.6e-4, "n_cg": 20},
        {"rho": 1.6e-2, "lam": 1.6e-4, "n_cg": 20, "eta": 1.0},
        # warm start from the TV-ADMM pick (CCDF): the 10 steps cover [0, t_start]
        {"rho": 1.6e-2, "lam": 1.6e-4, "n_cg": 20, "start": "tv_admm", "t_start": 0.2},
    ],
}
# then around the best lam of the grid: TV-ADMM's iterations and ADMM penalty (rho, relative)
REAL_REFINE: dict[str, list[dict[str, Any]]] = {
    "tv_admm": [{"n_iter": 300}, {"rho": 1e-3}, {"rho": 1.6e-2}, {"rho": 1e-3, "n_iter": 300}],
}
REAL_MODALITY_TASK = {"sparse_view": "ct8", "mri": "mri4"}  # tuned on these (limited angle: CT's)
REAL_TASKS = ("ct8", "mri4")  # the goals' tasks; --real-more adds the others and noisy ones
REAL_MORE = ("ct4", "la90", "mri8", "ct8-noisy", "mri4-noisy")


def held_out_64(role: str, size: int) -> torch.Tensor:
    """The held-out real subject ``role`` resampled to size^3 (trilinear, same field of view),
    in [0, 1] by its 0.5 / 99.5 percentiles (clipped)."""
    return normalized(resample(held_out_volume(role), (size,) * 3))


def tune_real(
    prior: SlicePrior, size: int, phantom_picks: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Best parameters per modality and method on the tuning subject (:data:`REAL_GRID`; the
    other solvers: ``phantom_picks``, the phantom run's), and the sweeps."""
    gt = held_out_64("tune", size)
    best: dict[str, Any] = {}
    record: dict[str, Any] = {}
    for modality, task in REAL_MODALITY_TASK.items():
        kind, kw = OPERATORS[task]
        op = make_operator(kind, size, **kw)
        y, _ = measure(op, gt, noisy=False, seed=VALIDATION_SEED)
        best[modality] = {m: dict(phantom_picks[modality][m]) for m in REAL_DIFFUSION}
        record[modality] = {}
        for method, grid in REAL_GRID.items():
            rows: list[dict[str, Any]] = []
            for stage, settings in (("grid", grid), ("refine", REAL_REFINE.get(method, []))):
                base = max(rows, key=lambda r: r["psnr"])["params"] if rows else {}
                for extra in settings:
                    params = {**base, **extra}
                    r = score(method, op, y, gt, prior, params, REAL_TUNE_STEPS, 0, best[modality])
                    rows.append({"params": params, "stage": stage, **r})
                    print(f"  tune real {task} {method} {params}: {rows[-1]['psnr']:.2f} dB",
                          flush=True)  # fmt: skip
            record[modality][method] = rows
            best[modality][method] = max(rows, key=lambda r: r["psnr"])["params"]
    best["limited_angle"] = best["sparse_view"]
    return best, record


def run_real(
    prior: SlicePrior,
    size: int,
    best: dict[str, Any],
    tasks: tuple[str, ...],
    progress: Path,
) -> dict[str, Any]:
    """Every task x method on the test subject."""
    gt = held_out_64("test", size)
    results: dict[str, Any] = {}
    for task in tasks:
        op_name, noisy = task.removesuffix("-noisy"), task.endswith("-noisy")
        kind, kw = OPERATORS[op_name]
        op = make_operator(kind, size, **kw)
        y, std = measure(op, gt, noisy, seed=TEST_SEED)
        picks = best[MODALITY[op_name]]
        row: dict[str, Any] = {}
        for method in REAL_METHODS:
            params = picks.get(method, {})
            row[method] = score(method, op, y, gt, prior, params, REAL_STEPS, 0, picks)
            r = row[method]
            print(f"{task:>12} {method:>17}: {r['psnr']:6.2f} dB  SSIM {r['ssim']:.3f}  "
                  f"{r['seconds']:6.1f} s  NFE {r['nfe']}", flush=True)  # fmt: skip
        results[task] = {**row, "_noise_std": {"value": std}}
        atomic_write_json(progress, results)
    return results


def real_goals(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals on the test subject: the best diffusion solver >= TV-ADMM + 1 dB on
    8-view CT and MRI x4, and never below CG (on every task run)."""
    out: dict[str, Any] = {}
    below_cg = []
    for task, row in results.items():
        best = max((m for m in row if m in REAL_DIFFUSION or m in REAL_ADDED),
                   key=lambda m: row[m]["psnr"])  # fmt: skip
        gain = row[best]["psnr"] - row["tv_admm"]["psnr"]
        if task in REAL_TASKS:
            out[f"best_diffusion_{task}"] = best
            out[f"best_diffusion_minus_tv_admm_db_{task}"] = gain
            out[f"diffusion_beats_tv_admm_by_1db_{task}"] = gain >= 1.0
        out[f"best_diffusion_not_below_cg_{task}"] = row[best]["psnr"] >= row["cg"]["psnr"]
        if row[best]["psnr"] < row["cg"]["psnr"]:
            below_cg.append(task)
    out["tasks_where_best_diffusion_below_cg"] = below_cg
    out["best_diffusion_never_below_cg"] = not below_cg
    return out


def prior_quality_real(priors: dict[str, SlicePrior], size: int) -> dict[str, Any]:
    """Tweedie denoising PSNR of each prior on the test subject's non-empty axial slices."""
    slices = nonempty_slices(held_out_64("test", size), max_slices=16)
    return {
        name: prior_denoising_psnr(prior, slices, (0.05, 0.1, 0.2, 0.4)).to_dict()
        for name, prior in priors.items()
    }


def results_table(
    results: dict[str, Any], columns: Sequence[str], cell: Callable[[dict[str, Any]], str]
) -> list[str]:
    """A markdown table: a row per task, a column per method, the best PSNR in bold."""
    lines = ["| task | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for task, row in results.items():
        best = max(columns, key=lambda m: row[m]["psnr"])
        cells = [f"**{cell(row[m])}**" if m == best else cell(row[m]) for m in columns]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def real_lines(data: dict[str, Any]) -> list[str]:
    """The markdown section of the real-volume run."""
    g = data["goals"]
    lines = [
        f"## Real anatomy, {data['size']}^3 (held-out subjects)",
        "",
        f"Reproduce: `{data['command']}` ({data['wall_minutes']:.1f} min, "
        f"{data['machine']['threads']} thread, 2 shared CPU cores, no GPU; times are pessimistic).",
        "",
        f"Prior: `{data['prior']}` (`{REAL_PRIOR}`, the shipped default for real volumes, is "
        "trained on augmented MNI152 template slices only, fine-tuned from phantom-64: the "
        "phantom-64 column of the prior quality table below). "
        "Parameters picked on the **tuning** subject (nibabel's `example4d.nii.gz`, first "
        "frame: an EPI head, 128x96x24 at 2x2x2.2 mm); the table is the **test** subject "
        "(dipy's `aniso_vox.nii.gz`: a b0 head, 58x58x24 at 4x4x5 mm). Both are resampled to "
        f"{data['size']}^3 over their field of view (so the test volume's z axis is "
        "interpolated from 24 slices) and mapped to [0, 1] by their 0.5 / 99.5 percentiles. "
        "NFE: " + ", ".join(f"{m} {n}" for m, n in data["steps"].items()) + " (the DDS sweep "
        "at 10). Swept on the tuning subject: TV-ADMM (lam over a grid at 100 iterations, "
        "then 300 iterations and rho x 1/4 and x 4 at the best lam: the `refine` rows) and DDS "
        "(CG steps per diffusion step, eta, and a warm start from the TV-ADMM pick at "
        "t_start, CCDF); DiffusionMBIR, DPS and RED-diff "
        "take the 64^3 phantom run's per-modality picks (no CPU time was left to sweep them). "
        "One reconstruction per cell, seed 0; noise (`-noisy`) as in the phantom runs."
        + "".join(
            f" `{m}`: {a['method']} with {a['steps']} steps and the same parameters, added by "
            f"`{a['command']}` ({a['wall_minutes']:.1f} min)."
            for m, a in data.get("added", {}).items()
        ),
        "",
        "| goal | result |",
        "|---|---|",
    ]
    for task in REAL_TASKS:
        lines.append(
            f"| best diffusion >= TV-ADMM + 1 dB on {task} | "
            f"{YES[g[f'diffusion_beats_tv_admm_by_1db_{task}']]} ({g[f'best_diffusion_{task}']} "
            f"{g[f'best_diffusion_minus_tv_admm_db_{task}']:+.2f} dB) |"
        )
    below = ", ".join(g["tasks_where_best_diffusion_below_cg"]) or "none"
    columns = [*REAL_METHODS, *(m for m in REAL_ADDED if m in data.get("added", {}))]
    lines += [
        f"| best diffusion never below CG | {YES[g['best_diffusion_never_below_cg']]} "
        f"(below on: {below}) |",
        "",
        *results_table(
            data["results"],
            columns,
            lambda r: f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['seconds']:.0f} s",
        ),
    ]
    note = "a pick at the edge of a one-parameter grid is marked: the grid was too narrow"
    lines += [
        "",
        f"Cells: PSNR dB / SSIM / seconds. Parameters picked on the tuning subject ({note}):",
    ]
    lines += [""]
    lines += ["| modality | method | setting | PSNR on the tuning subject |", "|---|---|---|---|"]
    for modality, sweep in data["tuning"].items():
        for method, rows in sweep.items():
            grid = [r for r in rows if r.get("stage", "grid") == "grid"]
            keys = {k for r in grid for k in r["params"]}
            one_d = sum(len({str(r["params"].get(k)) for r in grid}) > 1 for k in keys) == 1
            for r in rows:
                mark = " (chosen)" if r["params"] == data["chosen"][modality][method] else ""
                if mark and one_d and len(grid) > 2 and r in (grid[0], grid[-1]):
                    mark = " (chosen, grid edge)"
                stage = " (refine)" if r.get("stage") == "refine" else ""
                lines.append(f"| {modality} | {method} | {_fmt_params(r['params'])}{stage}{mark}"
                             f" | {r['psnr']:.2f} |")  # fmt: skip
    fixed = {
        modality: ", ".join(
            f"{m} {_fmt_params(p)}" for m, p in picks.items() if m not in data["tuning"][modality]
        )
        for modality, picks in data["chosen"].items()
        if modality in data["tuning"]
    }
    lines += ["", "Not swept (the 64^3 phantom run's picks): "]
    lines[-1] += "; ".join(f"{modality}: {text}" for modality, text in fixed.items()) + "."
    lines += [
        "",
        "Prior quality on the test subject (Tweedie denoising PSNR, dB, of its non-empty "
        "axial slices at noise std s; TV: 2-D TV with the oracle weight):",
        "",
        "| s | noisy | " + " | ".join(data["prior_quality"]) + " | TV (oracle) |",
        "|---|---|" + "---|" * (len(data["prior_quality"]) + 1),
    ]
    levels = [q["levels"] for q in data["prior_quality"].values()]
    for i, lv in enumerate(levels[0]):
        cells = " | ".join(f"{lv_list[i]['prior_psnr']:.2f}" for lv_list in levels)
        lines.append(f"| {lv['s']:g} | {lv['noisy_psnr']:.2f} | {cells} | {lv['tv_psnr']:.2f} |")
    return [*lines, ""]


def add_to_real(method: str, out: Path) -> int:
    """Run :data:`REAL_ADDED`'s ``method`` on the stored real run's test tasks with the stored
    (tuning-subject) parameters; store it beside the other columns and redo the goals."""
    start = time.perf_counter()
    report = read_report(out / "medical.json")
    data = report["real"]
    name, steps = REAL_ADDED[method]
    prior, size = load_prior(shipped_prior_dir(data["prior"])), data["size"]
    gt = held_out_64("test", size)
    for task, row in data["results"].items():
        op_name, noisy = task.removesuffix("-noisy"), task.endswith("-noisy")
        kind, kw = OPERATORS[op_name]
        op = make_operator(kind, size, **kw)
        y, _ = measure(op, gt, noisy, seed=TEST_SEED)
        picks = data["chosen"][MODALITY[op_name]]
        row[method] = score(name, op, y, gt, prior, picks[name], {name: steps}, 0, picks)
        print(f"{task:>12} {method:>17}: {row[method]['psnr']:6.2f} dB", flush=True)
    command = f"OMP_NUM_THREADS={torch.get_num_threads()} python benchmarks/run.py medical "
    command += f"--real-add {method}"
    minutes = (time.perf_counter() - start) / 60
    data.setdefault("added", {})[method] = {"method": name, "steps": steps, "command": command,
                                            "wall_minutes": minutes}  # fmt: skip
    write_report(out, report)
    print(json.dumps(data["goals"], indent=1))
    return 0


def main_real(args: argparse.Namespace, out: Path) -> int:
    """The real-anatomy run: tune on one subject, test on another; stored as ``real``."""
    size = 64
    folder = Path(args.prior) if args.prior else shipped_prior_dir(REAL_PRIOR)
    if prior_image_size(folder) != size:
        raise SystemExit(f"--prior {folder}: the real-volume run needs a {size}^2 prior")
    start = time.perf_counter()
    prior, phantom_prior = load_prior(folder), load_prior(shipped_prior_dir(image_size=size))
    quality = prior_quality_real({folder.name: prior, "phantom-64": phantom_prior}, size)
    report = read_report(out / "medical.json")
    phantom_picks = report["runs"]["64"]["chosen"]
    best, record = tune_real(prior, size, phantom_picks)
    tasks = REAL_TASKS + (REAL_MORE if args.real_more else ())
    progress = Path(tempfile.gettempdir()) / "polydiff-bench-medical-real-progress.json"
    results = run_real(prior, size, best, tasks, progress)
    noise = {t: r.pop("_noise_std")["value"] for t, r in results.items()}
    threads = torch.get_num_threads()
    command = f"OMP_NUM_THREADS={threads} python benchmarks/run.py medical --real"
    command += " --real-more" if args.real_more else ""
    command += f" --prior {args.prior}" if args.prior else ""
    data = {
        "command": command,
        "seed": 0,
        "size": size,
        "prior": folder.name,
        "tuning_subject": HELD_OUT["tune"],
        "test_subject": HELD_OUT["test"],
        "steps": REAL_STEPS,
        "noise_rel": NOISE_REL,
        "noise_std": noise,
        "chosen": best,
        "tuning": record,
        "results": results,
        "prior_quality": quality,
        "goals": real_goals(results),
        "wall_minutes": (time.perf_counter() - start) / 60,
        "machine": {"arch": platform.machine(), "torch": torch.__version__, "threads": threads},
    }
    report["real"] = json.loads(json.dumps(data, default=str))
    write_report(out, report)
    print(json.dumps(data["goals"], indent=1))
    return 0


# ----------------------------------------------------------------------------- report
# ----------------------------------------------------------------------------- report


def goals(results: dict[str, Any], proj: dict[str, Any]) -> dict[str, Any]:
    ct8 = results["ct8"]
    best_diff = max(DIFFUSION, key=lambda m: ct8[m]["psnr"])
    gain = ct8[best_diff]["psnr"] - ct8["tv_admm"]["psnr"]
    dds_gap = ct8["diffusion_mbir"]["psnr"] - ct8["dds"]["psnr"]
    nfe_ratio = ct8["diffusion_mbir"]["nfe"] / max(ct8["dds"]["nfe"], 1)
    # equal accuracy: no worse (5% slack) than grid_sample on both objects
    equal_accuracy = all(
        proj["sparse"][k] <= 1.05 * proj["grid_sample"][k]
        for k in ("rel_error", "rel_error_smooth")
    )
    speedup = min(proj["speedup_forward"], proj["speedup_adjoint"])
    return {
        "best_diffusion_ct8": best_diff,
        "best_diffusion_minus_tv_admm_db": gain,
        "diffusion_beats_tv_admm_by_3db": gain >= 3.0,
        "mbir_minus_dds_db": dds_gap,
        "mbir_to_dds_nfe_ratio": nfe_ratio,
        "dds_within_0.5db_of_mbir_at_10x_fewer_nfe": dds_gap <= 0.5 and nfe_ratio >= 10,
        "projector_min_speedup": speedup,
        "projector_equal_accuracy": equal_accuracy,
        "projector_10x_faster_at_equal_accuracy": speedup >= 10 and equal_accuracy,
    }


def _fmt_params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def observations(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Plain statements: who wins where, diverged runs, and what the noise changed."""
    out = []
    for task, row in results.items():
        best = max(METHODS, key=lambda m: row[m]["psnr"])
        best_diff = max(DIFFUSION, key=lambda m: row[m]["psnr"])
        gap = row[best_diff]["psnr"] - row["tv_admm"]["psnr"]
        diverged = [m for m in DIFFUSION if row[m]["psnr"] < 10.0]
        line = f"- {task}: best {best}; best diffusion {best_diff} ({gap:+.2f} dB vs TV-ADMM)"
        if diverged:
            line += f"; diverged (< 10 dB): {', '.join(diverged)}"
        out.append(line + ".")
    for task in results:
        noisy = results.get(task + "-noisy")
        if noisy:
            change = {m: noisy[m]["psnr"] - results[task][m]["psnr"] for m in ("cg", "tv_admm")}
            out.append(
                f"- noise on {task}: CG {change['cg']:+.2f} dB, "
                f"TV-ADMM {change['tv_admm']:+.2f} dB."
            )
    return out


YES = {True: "**met**", False: "**not met**"}


def goal_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    """One table: each goal, per stored run."""
    sizes = sorted(runs, key=int, reverse=True)
    lines = [
        "| goal | " + " | ".join(f"{s}^3" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    cells = {"tv": [], "dds": [], "proj": []}
    for s in sizes:
        g = runs[s]["goals"]
        cells["tv"].append(
            f"{YES[g['diffusion_beats_tv_admm_by_3db']]} ({g['best_diffusion_ct8']} "
            f"{g['best_diffusion_minus_tv_admm_db']:+.2f} dB)"
        )
        cells["dds"].append(
            f"{YES[g['dds_within_0.5db_of_mbir_at_10x_fewer_nfe']]} (MBIR - DDS = "
            f"{g['mbir_minus_dds_db']:+.2f} dB at {g['mbir_to_dds_nfe_ratio']:.0f}x the NFE)"
        )
        cells["proj"].append(
            f"{YES[g['projector_10x_faster_at_equal_accuracy']]} (min speed-up "
            f"{g['projector_min_speedup']:.0f}x at 64^3)"
        )
    names = {
        "tv": "best diffusion solver >= TV-ADMM + 3 dB on 8-view CT",
        "dds": "DDS within 0.5 dB of DiffusionMBIR at 10x fewer NFE (8-view CT)",
        "proj": "sparse projector >= 10x faster than grid_sample at equal accuracy",
    }
    return lines + [f"| {names[k]} | " + " | ".join(v) + " |" for k, v in cells.items()]


def run_lines(data: dict[str, Any]) -> list[str]:
    """The markdown section of one run (one volume size)."""
    size, steps = data["sizes"]["volume"], data["steps"]
    lines = [
        f"## {size}^3 run",
        "",
        f"Reproduce: `{data['command']}` ({data['wall_minutes']:.1f} min; "
        f"{data['machine'].get('threads', 1)} thread(s), torch {data['machine']['torch']}, "
        "machine shared with other jobs, so times are pessimistic).",
        "",
        f"Prior: `{data['prior']}` ({size}^2 slices, trained on seeds 0..63). Test phantom: "
        f"randomised 3D Shepp-Logan, seed {TEST_SEED}; validation phantom seed "
        f"{VALIDATION_SEED}. Real volume: nibabel's `anatomical.nii` resampled to {size}^3. "
        f"Noise: white Gaussian, std = {NOISE_REL:g} x RMS of the non-zero measurements. NFE "
        "budgets: "
        + ", ".join(f"{m} {n}" for m, n in steps.items())
        + " (DiffusionMBIR without corrector steps; `dds_100` is DDS with the parameters "
        "tuned at 10 steps, run with 100). One reconstruction per cell, seed 0.",
    ]
    if data.get("plan_note"):
        lines += ["", data["plan_note"]]
    lines += [
        "",
        "### Results (PSNR dB / SSIM / seconds / NFE)",
        "",
        "`fbp` is the zero-filled inverse FFT for MRI. Rows: tasks; `-noisy` adds noise; "
        "`-brain` is the real volume. Each task uses the parameters picked on its modality.",
        "",
        *results_table(
            data["results"],
            METHODS,
            lambda r: f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['seconds']:.1f} s / {r['nfe']}",
        ),
    ]
    lines += ["", "### Observations (computed from the table)", "", *observations(data["results"])]
    lines += [
        "",
        "### Parameters per modality (relative to ||A||^2)",
        "",
        "Validation phantom, validation operator per modality: "
        + ", ".join(f"{m} {t}" for m, t in VALIDATION_TASK.items())
        + " (DDS's gamma on its noisy version). 'not swept': not validated at this size; the "
        "32^3 run's pick for the modality (64^3 run) or the library defaults (--quick).",
        "",
        "| method | " + " | ".join(VALIDATION_TASK) + " |",
        "|---|" + "---|" * len(VALIDATION_TASK),
    ]
    for method in (*GRID, "dds_noisy"):
        cells = []
        for modality in VALIDATION_TASK:
            swept = method in data["tuning"].get(modality, {})
            pick = _fmt_params(data["chosen"][modality].get(method, {})) or "defaults"
            cells.append(pick if swept else f"{pick} (not swept)")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Validation sweeps (PSNR dB / seconds)",
        "",
        "| modality | method | setting | PSNR | seconds |",
        "|---|---|---|---|---|",
    ]
    for modality, sweep in data["tuning"].items():
        for method, rows in sweep.items():
            for r in rows:
                mark = " (chosen)" if r["params"] == data["chosen"][modality][method] else ""
                lines.append(
                    f"| {modality} | {method} | {_fmt_params(r['params'])}{mark} | "
                    f"{r['psnr']:.2f} | {r['seconds']:.1f} |"
                )
    return [*lines, ""]


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    runs = report["runs"]
    sizes = sorted(runs, key=int, reverse=True)
    proj = runs[sizes[0]]["projector"]
    lines = [
        "# Medical: 3D reconstruction with a 2D slice diffusion prior",
        "",
        "Runs stored here (raw numbers and the goals as booleans per run: `medical.json`, key "
        "`runs.<size>`): "
        + "; ".join(f"{s}^3: `{runs[s]['command']}`" for s in sizes)
        + ". The issue asks for 64^3 volumes.",
        "",
        "## Goals",
        "",
        *goal_lines(runs),
        "",
        "Every solver's parameters are picked per modality (sparse-view CT, limited-angle CT, "
        "MRI) on the validation phantom, never on the test phantom.",
        "",
    ]
    if "real" in report:
        lines += real_lines(report["real"])
    for s in sizes:
        lines += run_lines(runs[s])
    lines += [
        f"## Projector: {proj['size']}^3, {proj['n_views']} views, best of {proj['repeats']} "
        f"runs ({sizes[0]}^3 run)",
        "",
        "Accuracy: relative L2 error against analytic projections, of a centred ball "
        "(4^3-supersampled voxels; sharp edges) and of a Gaussian blob (sigma = size / 8, "
        "sampled at voxel centres; smooth). 'Equal accuracy' means the sparse projector's "
        "error is at most 1.05x grid_sample's on both.",
        "",
        "| projector | forward | adjoint | error, ball | error, Gaussian |",
        "|---|---|---|---|---|",
    ]
    for name in ("sparse", "grid_sample"):
        p = proj[name]
        lines.append(
            f"| {name} | {1e3 * p['forward_s']:.1f} ms | {1e3 * p['adjoint_s']:.1f} ms | "
            f"{100 * p['rel_error']:.2f}% | {100 * p['rel_error_smooth']:.3f}% |"
        )
    lines += [
        "",
        f"Speed-up: forward {proj['speedup_forward']:.0f}x, "
        f"adjoint {proj['speedup_adjoint']:.0f}x.",
        "",
    ]
    atomic_write_text(path, "\n".join(lines))


def all_goals(report: dict[str, Any]) -> dict[str, bool]:
    """Every stored run's goal booleans in one flat object (``<run>.<goal>``, run = the
    phantom size or ``real``): the report's top-level ``goals``."""
    runs = {**report["runs"], **({"real": report["real"]} if "real" in report else {})}
    return {
        f"{run}.{name}": value
        for run, data in runs.items()
        for name, value in data["goals"].items()
        if isinstance(value, bool)
    }


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``medical.json`` (with the top-level ``goals``) and ``medical.md``."""
    if "real" in report:  # derived from the stored results (goals added since stay current)
        report["real"]["goals"] = real_goals(report["real"]["results"])
    report["goals"] = all_goals(report)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "medical.json", report)
    write_markdown(out / "medical.md", report)


def read_report(path: Path) -> dict[str, Any]:
    """The stored runs (a report from before the per-size layout holds none)."""
    if not path.is_file():
        return {"runs": {}}
    report = json.loads(path.read_text())
    return report if "runs" in report else {"runs": {}}  # keeps "real", the real-volume run


PLAN_NOTES = {
    "64": "Plan at 64^3 (about 80 min on one thread): every task of 32^3; TV-ADMM and DDS "
    "swept per modality at 64^3, DiffusionMBIR on sparse-view CT only (the goals are read on "
    "ct8; its three best 32^3 settings); the other picks are the 32^3 run's per-modality picks "
    "(relative parameters carry over across sizes).",
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py medical")
    parser.add_argument(
        "--size", type=int, default=None, help="volume size: 64 (default, the issue's) or 32"
    )
    parser.add_argument("--quick", action="store_true", help="two tasks, few steps, no sweep")
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="rewrite medical.md (and the goals derived from the results) from medical.json",
    )
    parser.add_argument("--prior", default=None, help="prior folder (default: shipped, by size)")
    parser.add_argument(
        "--real", action="store_true", help="the real-anatomy run (held-out subjects, 64^3)"
    )
    parser.add_argument(
        "--real-add", choices=sorted(REAL_ADDED), help="add a column to the stored --real run"
    )
    parser.add_argument(
        "--real-more",
        action="store_true",
        help="--real: also 4-view CT, limited angle, MRI x8, noisy",
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default docs/benchmarks; --quick: a temp dir)"
    )
    args = parser.parse_args(argv)
    default_out = ROOT / "docs" / "benchmarks"
    if args.markdown_only:
        out = Path(args.out) if args.out else default_out
        write_report(out, read_report(out / "medical.json"))
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    if args.real_add:
        return add_to_real(args.real_add, Path(args.out) if args.out else default_out)
    if args.real:
        return main_real(args, Path(args.out) if args.out else default_out)
    start = time.perf_counter()
    if args.prior:
        folder = Path(args.prior)
    else:
        folder = shipped_prior_dir(image_size=args.size or (32 if args.quick else 64))
    prior = load_prior(folder)
    size = prior_image_size(folder)
    if args.size is not None and args.size != size:
        parser.error(f"--prior {folder} was trained on {size}^2 slices, not --size {args.size}")
    if str(size) not in PLANS:
        parser.error(f"no benchmark plan for {size}^3 volumes (plans: 32, 64)")
    plan = PLANS["quick" if args.quick else str(size)]
    if args.out:
        out = Path(args.out)
    elif args.quick:  # never overwrite the full report with quick numbers
        out = Path(tempfile.gettempdir()) / "polydiff-bench-medical-quick"
    else:
        out = default_out
    report = read_report(out / "medical.json")
    inherited = report["runs"].get("32", {}).get("chosen", {})
    best, record = tune(prior, size, plan, inherited)
    print("test tasks", flush=True)
    progress = Path(tempfile.gettempdir()) / f"polydiff-bench-medical-{size}-progress.json"
    atomic_write_json(
        progress.with_name(progress.stem + "-tuning.json"), {"best": best, "sweep": record}
    )
    results = run_tasks(prior, size, best, plan, progress)
    noise = {t: r.pop("_noise_std")["value"] for t, r in results.items()}
    proj = projector_speed(32 if args.quick else 64, 8, repeats=3 if args.quick else 5)
    proj["repeats"] = 3 if args.quick else 5
    threads = torch.get_num_threads()
    command = f"OMP_NUM_THREADS={threads} python benchmarks/run.py medical --size {size}"
    command += " --quick" if args.quick else ""
    command += f" --prior {args.prior}" if args.prior else ""
    data = {
        "command": command,
        "seed": 0,
        "sizes": {"volume": size, "test_seed": TEST_SEED, "validation_seed": VALIDATION_SEED},
        "prior": folder.name,
        "plan": {k: v for k, v in plan.items() if k != "steps"},
        "plan_note": "" if args.quick else PLAN_NOTES.get(str(size), ""),
        "steps": plan["steps"],
        "noise_rel": NOISE_REL,
        "noise_std": noise,
        "chosen": best,
        "tuning": record,
        "results": results,
        "projector": proj,
        "goals": goals(results, proj),
        "wall_minutes": (time.perf_counter() - start) / 60,
        "machine": {"arch": platform.machine(), "torch": torch.__version__, "threads": threads},
    }
    report["runs"][str(size)] = json.loads(json.dumps(data, default=str))
    write_report(out, report)
    print(f"wrote {out / 'medical.md'}")
    print(json.dumps(data["goals"], indent=1))
    return 0
