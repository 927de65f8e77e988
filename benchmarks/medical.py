"""3D CT / MRI reconstruction with the shipped 2D slice prior against classical baselines.

Phase 1 (validation): a small hyperparameter sweep of every method on a validation phantom
(seed 900, disjoint from the prior's training seeds 0..63 and from the test seeds) with 8-view CT;
the best setting per method is used in phase 2. Phase 2 (test): held-out phantoms (seed 1000)
with 8-view and 4-view sparse-view CT, 90-degree limited-angle CT, MRI x4 and x8 (uniform 1D
masks with ACS), each noiseless and noisy, plus MRI x4 / x8 on a real brain volume (nibabel's
``anatomical.nii``, resampled); PSNR / SSIM / seconds / NFE for FBP (zero-filled for MRI), CG,
TV-ADMM, DiffusionMBIR, DDS, DPS and RED-diff. Phase 3: sparse vs grid_sample projector speed
and accuracy against the analytic Radon transform of a ball.

All penalty and step parameters are relative to ||A||^2 (polydiff.medical.solvers.common).
Writes docs/benchmarks/medical.json and docs/benchmarks/medical.md.
Run: `nox -s bench -- medical` (or `OMP_NUM_THREADS=1 python benchmarks/run.py medical [--quick]`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from polydiff.core.io import atomic_write_json, atomic_write_text
from polydiff.medical import baselines
from polydiff.medical.data import load_nifti, normalize, shepp_logan_3d
from polydiff.medical.metrics import volume_metrics
from polydiff.medical.operators import LinearOperator, make_operator
from polydiff.medical.operators.ct import ParallelBeamCT, RotateSumCT
from polydiff.medical.prior import load_prior, shipped_prior_dir
from polydiff.medical.solvers import SOLVERS, SlicePrior
from polydiff.medical.solvers.common import operator_norm2

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
METHODS = ("fbp", "cg", "tv_admm", "diffusion_mbir", "dds", "dds_100", "dps", "red_diff")
DIFFUSION = ("diffusion_mbir", "dds", "dds_100", "dps", "red_diff")

# Steps (NFE budgets) are fixed, not tuned: DDS at 10x fewer NFE than DiffusionMBIR; dds_100
# is DDS with its parameters tuned at 10 steps, run at 100 (DDS gains ~2 dB per doubling of
# the NFE on the validation phantom: 19.9 / 21.8 / 23.8 / 25.9 dB at 10 / 25 / 50 / 100).
FULL = {"dds": 10, "dds_100": 100, "diffusion_mbir": 100, "dps": 20, "red_diff": 30}
QUICK = {"dds": 4, "dds_100": 8, "diffusion_mbir": 8, "dps": 4, "red_diff": 4}

# Validation grids (relative units). TV-ADMM: rho fixed at 4e-3 ||A||^2, x >= 0.
GRID: dict[str, list[dict[str, Any]]] = {
    "tv_admm": [{"lam": v} for v in (2.5e-5, 1e-4, 4e-4)],
    "dds": [
        *({"rho": r, "lam": 0.01 * r, "grid": "uniform"} for r in (4e-3, 1.6e-2, 6.4e-2)),
        {"rho": 1.6e-2, "lam": 1.6e-4, "grid": "logsnr"},
    ],
    # one CG step per diffusion step (the paper's, with 2000+ steps) leaves 100-step DiffusionMBIR
    # far from data consistency (residual 13%); 5 CG steps diverged at rho 1.6e-2 (see docs)
    "diffusion_mbir": [
        {"rho": 4e-3},
        {"rho": 1.6e-2},
        {"rho": 1.6e-2, "n_cg": 2},
        {"rho": 1.6e-3, "n_cg": 5},
    ],
    "dps": [{"zeta": z} for z in (0.5, 2.0, 8.0)],
    "red_diff": [{"lam": 1.0, "lr": 0.01}, {"lam": 1.0, "lr": 0.003}],
}
NOISY_GRID = {"dds": [{"gamma": g} for g in (None, 10.0)]}


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
    """Measurements ``A gt (+ noise)`` and the noise std used."""
    y = op.forward(gt)
    if not noisy:
        return y, 0.0
    sampled = y[y.abs() > 0]
    std = NOISE_REL * float(sampled.abs().square().mean().sqrt())
    g = torch.Generator().manual_seed(seed)
    return y + std * op.noise_like(y, g), std


# ----------------------------------------------------------------------------- methods


def run_method(
    method: str,
    op: LinearOperator,
    y: torch.Tensor,
    prior: SlicePrior,
    params: dict[str, Any],
    steps: dict[str, int],
    seed: int,
) -> tuple[torch.Tensor, int]:
    """One reconstruction in [0, 1] units and its NFE."""
    if method == "fbp":
        x = baselines.fbp(op, y) if isinstance(op, ParallelBeamCT) else op.adjoint(y)
        return x, 0
    if method == "cg":
        return baselines.cg_least_squares(op, y, n_iter=30), 0
    if method == "tv_admm":
        norm2 = operator_norm2(op)
        kw = {"lam": params["lam"] * norm2, "rho": 4e-3 * norm2}
        return baselines.tv_admm(op, y, n_iter=100, n_cg=5, nonnegative=True, **kw), 0
    g = torch.Generator().manual_seed(seed)
    if method == "diffusion_mbir":  # predictor only: NFE = steps
        params = {"corrector_steps": 0, **params}
    solver = SOLVERS["dds" if method == "dds_100" else method]
    rec = solver(prior, op, y, steps=steps[method], generator=g, **params)
    return rec.x, rec.nfe


def score(
    method: str,
    op: LinearOperator,
    y: torch.Tensor,
    gt: torch.Tensor,
    prior: SlicePrior,
    params: dict[str, Any],
    steps: dict[str, int],
    seed: int,
) -> dict[str, float]:
    start = time.perf_counter()
    x, nfe = run_method(method, op, y, prior, params, steps, seed)
    seconds = time.perf_counter() - start
    m = volume_metrics(x.detach().float(), gt)
    return {"psnr": m.psnr, "ssim": m.ssim, "seconds": seconds, "nfe": nfe}


def tune(
    prior: SlicePrior, size: int, steps: dict[str, int], quick: bool
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Best parameters per method on the validation phantom (8-view CT; DDS's gamma on noisy
    8-view CT), and the sweep's record."""
    gt = shepp_logan_3d(size, seed=VALIDATION_SEED)
    kind, kw = OPERATORS["ct8"]
    op = make_operator(kind, size, **kw)
    y, _ = measure(op, gt, noisy=False, seed=VALIDATION_SEED)
    best: dict[str, dict[str, Any]] = {}
    record: dict[str, Any] = {}
    for method, grid in GRID.items():
        if method == "diffusion_mbir":  # DDS's best TV threshold lam / rho, MBIR's own rho
            ratio = best["dds"]["lam"] / best["dds"]["rho"]
            grid = [{**p, "lam": p["rho"] * ratio} for p in grid]
        grid = grid[:1] if quick else grid
        rows = []
        for params in grid:
            r = score(method, op, y, gt, prior, params, steps, seed=0)
            rows.append({"params": params, **r})
            print(
                f"  tune {method} {params}: {r['psnr']:.2f} dB ({r['seconds']:.1f} s)", flush=True
            )
        record[method] = rows
        best[method] = max(rows, key=lambda r: r["psnr"])["params"]
    y_noisy, _ = measure(op, gt, noisy=True, seed=VALIDATION_SEED)
    rows = []
    for extra in NOISY_GRID["dds"][: 1 if quick else None]:
        params = {**best["dds"], **extra}
        r = score("dds", op, y_noisy, gt, prior, params, steps, seed=0)
        rows.append({"params": params, **r})
        print(f"  tune dds noisy {params}: {r['psnr']:.2f} dB", flush=True)
    record["dds_noisy"] = rows
    best["dds_noisy"] = max(rows, key=lambda r: r["psnr"])["params"]
    return best, record


def run_tasks(
    prior: SlicePrior,
    size: int,
    best: dict[str, dict[str, Any]],
    steps: dict[str, int],
    quick: bool,
    progress: Path | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Every test task x method: PSNR / SSIM / seconds / NFE."""
    phantom = shepp_logan_3d(size, seed=TEST_SEED)
    tasks: list[tuple[str, str, torch.Tensor, bool]] = []
    names = ["ct8", "mri4"] if quick else list(OPERATORS)
    for noisy in (False, True):
        for name in names:
            if quick and noisy and name != "ct8":
                continue
            tasks.append((name + ("-noisy" if noisy else ""), name, phantom, noisy))
    if not quick:
        brain = real_volume(size)
        tasks += [(f"{n}-brain", n, brain, False) for n in ("mri4", "mri8")]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for task, op_name, gt, noisy in tasks:
        kind, kw = OPERATORS[op_name]
        op = make_operator(kind, size, **kw)
        y, std = measure(op, gt, noisy, seed=TEST_SEED)
        results[task] = {}
        for method in METHODS:
            key = "dds" if method == "dds_100" else method
            params = best.get("dds_noisy" if (key == "dds" and noisy) else key, {})
            r = score(method, op, y, gt, prior, params, steps, seed=0)
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


def write_markdown(path: Path, data: dict[str, Any]) -> None:
    g, proj, sizes = data["goals"], data["projector"], data["sizes"]
    yes = {True: "**met**", False: "**not met**"}
    lines = [
        "# Medical: 3D reconstruction with a 2D slice diffusion prior",
        "",
        f"Reproduce: `{data['command']}` ({data['wall_minutes']:.1f} min on this machine). "
        "Raw numbers and the goals as booleans: `medical.json`.",
        "",
        f"Prior: the shipped `{data['prior']}` ({sizes['volume']}^2 slices; the CPU could not "
        f"train a 64^2 prior in the session's budget, so every volume here is {sizes['volume']}^3, "
        "not the issue's 64^3). Test phantom: randomised 3D Shepp-Logan, seed "
        f"{TEST_SEED}; validation phantom seed {VALIDATION_SEED}; the prior trained on seeds "
        f"0..63. Real volume: nibabel's `anatomical.nii` resampled to {sizes['volume']}^3. Noise: "
        f"white Gaussian, std = {NOISE_REL:g} x RMS of the non-zero measurements. NFE budgets: "
        + ", ".join(f"{m} {n}" for m, n in data["steps"].items())
        + " (DiffusionMBIR without corrector steps; `dds_100` is DDS with the parameters "
        "tuned at 10 steps, run with 100). One reconstruction per cell, seed 0.",
        "",
        f"Machine: {platform.machine()}, torch {torch.__version__}, "
        f"{data['machine'].get('threads', 1)} thread(s), shared with other jobs "
        "(times are pessimistic).",
        "",
        "## Goals",
        "",
        "- Best diffusion solver >= TV-ADMM + 3 dB on 8-view CT: "
        f"{yes[g['diffusion_beats_tv_admm_by_3db']]} ({g['best_diffusion_ct8']}: "
        f"{g['best_diffusion_minus_tv_admm_db']:+.2f} dB).",
        f"- DDS within 0.5 dB of DiffusionMBIR at 10x fewer NFE: "
        f"{yes[g['dds_within_0.5db_of_mbir_at_10x_fewer_nfe']]} (MBIR - DDS = "
        f"{g['mbir_minus_dds_db']:+.2f} dB at {g['mbir_to_dds_nfe_ratio']:.0f}x the NFE).",
        f"- Sparse projector >= 10x faster than grid_sample at equal accuracy: "
        f"{yes[g['projector_10x_faster_at_equal_accuracy']]} (min speed-up "
        f"{g['projector_min_speedup']:.0f}x; see below).",
        f"- Every goal above is measured on {sizes['volume']}^3 volumes; the issue asks for 64^3, "
        "which needs a 64^2 prior (not trained: CPU budget).",
        "",
        "Caveats: every parameter is picked on 8-view CT of the validation phantom only. The "
        "DiffusionMBIR setting picked there (5 CG steps per step) diverges on MRI, where "
        "1 CG step works (docs/medical.md, 'Diagnosis'). On the real brain volume (out of "
        "the phantom prior's distribution) the diffusion solvers stay below TV-ADMM and zero "
        "filling.",
        "",
        "## Results (PSNR dB / SSIM / seconds / NFE)",
        "",
        "`fbp` is the zero-filled inverse FFT for MRI. Rows: tasks; `-noisy` adds noise; `-brain` "
        "is the real volume.",
        "",
        "| task | " + " | ".join(METHODS) + " |",
        "|---|" + "---|" * len(METHODS),
    ]
    for task, row in data["results"].items():
        best = max(METHODS, key=lambda m: row[m]["psnr"])
        cells = []
        for m in METHODS:
            r = row[m]
            cell = f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['seconds']:.1f} s / {r['nfe']}"
            cells.append(f"**{cell}**" if m == best else cell)
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "## Observations (computed from the table)", "", *observations(data["results"])]
    lines += [
        "",
        "## Validation sweep (8-view CT, validation phantom; parameters relative to ||A||^2)",
        "",
        "| method | setting | PSNR | seconds |",
        "|---|---|---|---|",
    ]
    for method, rows in data["tuning"].items():
        for r in rows:
            mark = " (chosen)" if r["params"] == data["chosen"][method] else ""
            lines.append(
                f"| {method} | {_fmt_params(r['params'])}{mark} | {r['psnr']:.2f} | "
                f"{r['seconds']:.1f} |"
            )
    lines += [
        "",
        f"## Projector: {proj['size']}^3, {proj['n_views']} views, best of {proj['repeats']} runs",
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py medical")
    parser.add_argument("--quick", action="store_true", help="two tasks, few steps, no sweep")
    parser.add_argument(
        "--markdown-only", action="store_true", help="rewrite medical.md from medical.json"
    )
    parser.add_argument("--prior", default=None, help="prior folder (default: the shipped one)")
    parser.add_argument(
        "--out", default=None, help="output folder (default docs/benchmarks; --quick: a temp dir)"
    )
    args = parser.parse_args(argv)
    if args.markdown_only:
        out = Path(args.out) if args.out else ROOT / "docs" / "benchmarks"
        write_markdown(out / "medical.md", json.loads((out / "medical.json").read_text()))
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    start = time.perf_counter()
    folder = Path(args.prior) if args.prior else shipped_prior_dir()
    prior = load_prior(folder)
    size = json.loads((folder / "config.json").read_text())["prior"]["image_size"]
    steps = QUICK if args.quick else FULL
    if args.quick:  # the package defaults, no sweep
        best: dict[str, dict[str, Any]] = {m: {} for m in GRID}
        best["tv_admm"] = GRID["tv_admm"][1]
        best["dds_noisy"] = {}
        record: dict[str, Any] = {}
    else:
        print("validation sweep", flush=True)
        best, record = tune(prior, size, steps, quick=False)
    print("test tasks", flush=True)
    progress = Path(tempfile.gettempdir()) / "polydiff-bench-medical-progress.json"
    atomic_write_json(
        progress.with_name(progress.stem + "-tuning.json"), {"best": best, "sweep": record}
    )
    results = run_tasks(prior, size, best, steps, args.quick, progress)
    noise = {t: r.pop("_noise_std")["value"] for t, r in results.items()}
    proj = projector_speed(32 if args.quick else 64, 8, repeats=3 if args.quick else 5)
    proj["repeats"] = 3 if args.quick else 5
    command = "OMP_NUM_THREADS=1 python benchmarks/run.py medical" + (
        " --quick" if args.quick else ""
    )
    data = {
        "command": command,
        "seed": 0,
        "sizes": {"volume": size, "test_seed": TEST_SEED, "validation_seed": VALIDATION_SEED},
        "prior": folder.name,
        "steps": steps,
        "noise_rel": NOISE_REL,
        "noise_std": noise,
        "chosen": best,
        "tuning": record,
        "results": results,
        "projector": proj,
        "goals": goals(results, proj),
        "wall_minutes": (time.perf_counter() - start) / 60,
        "machine": {
            "arch": platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    if args.out:
        out = Path(args.out)
    elif args.quick:  # never overwrite the full report with quick numbers
        out = Path(tempfile.gettempdir()) / "polydiff-bench-medical-quick"
    else:
        out = ROOT / "docs" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "medical.json", json.loads(json.dumps(data, default=str)))
    write_markdown(out / "medical.md", data)
    print(f"wrote {out / 'medical.md'}")
    print(json.dumps(data["goals"], indent=1))
    return 0
