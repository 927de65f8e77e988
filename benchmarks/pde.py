"""1D forced Burgers: simulation and control by WDNO against its physical-space twin, the FNO,
the numerical solver on a coarser grid and the gradient (adjoint) optimisation of the control.

Data (`polydiff.pde.data.generate_burgers`, nx = 64, nt = 16, t in [0, 1], nu = 0.01, u = 0 at
both ends): training 1024 trajectories (seed 0, the shipped model's data), validation 64 (seed 2,
only to choose the guidance scale of each diffusion control model), test 256 (seed 1; the
first 32 are the control targets). Nothing is tuned on the test set.

Simulation (u given u0 and f): relative L2 over t >= 1 per test trajectory, mean and 95%
bootstrap interval over trajectories, overall and on the shock subset (the test trajectories
whose steepest slope max |u_x| over t >= 1 is above the 75% quantile of the test set), plus
the final-time error and seconds per trajectory. Models: WDNO (the shipped `burgers-wdno-64`,
or `--wdno <folder>`), the same diffusion in physical space and the autoregressive FNO, both
trained here with `polydiff.pde.train.train_method` for `--sim-steps` steps (batch 32, AdamW lr
1e-3, EMA 0.995, seed 0), and `solve_burgers` on coarser grids of 32 and 16 points.

Control (reach the test trajectory's own final state from its u0; J = mean_x (u(T) - u*)^2 +
energy_weight mean f^2 with energy_weight 1e-3, J always by the true solver on the forcing a
method returns): WDNO's control model and the physical-space one (trained `--control-steps`
steps each), each sampled with guidance of J judged on its predicted final state (as in WDNO)
and through the solver on its predicted forcing, each guidance scale picked on the validation
set; the gradient baseline (Adam lr 0.1 through the differentiable solver, 10, 20 and 50
steps), no forcing, and the forcing that generated the target (a reference that is reachable
with it). Zero-shot resolution: the models trained at 64 points on the test trajectories
generated at 128 points.

Run: `nox -s bench -- pde` (or `OMP_NUM_THREADS=1 python benchmarks/run.py pde [--runs DIR]`);
trained models are kept in `--runs` (default runs/pde/bench) and reused by a second run.
Writes docs/benchmarks/pde.{md,json}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from functools import partial
from pathlib import Path

import torch

from polydiff.core import load_method
from polydiff.core.errors import InputError
from polydiff.core.io import atomic_write_json, atomic_write_text
from polydiff.core.metrics import bootstrap_mean
from polydiff.pde.control import ControlProblem, control_objective
from polydiff.pde.data import BurgersConfig, generate_burgers
from polydiff.pde.fno import FNO, FNOConfig
from polydiff.pde.metrics import max_gradient, relative_l2_per_sample
from polydiff.pde.pipeline import (
    control,
    predict,
    predict_on_grid,
    shipped_model,
    simulate_coarse,
)
from polydiff.pde.solvers import resample_grid
from polydiff.pde.train import TrainConfig, train_method
from polydiff.pde.wdno import WDNO, WDNOConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = BurgersConfig(nx=64, nt=16, t_end=1.0)
TRAIN_SEED, TEST_SEED, VALIDATION_SEED = 0, 1, 2
N_TRAIN, N_TEST, N_VALIDATION, N_CONTROL = 1024, 256, 64, 32
N_CONTROL_VALIDATION = 16
FINE_NX = 128  # the zero-shot resolution test
SHOCK_QUANTILE = 0.75
ENERGY_WEIGHT = 1e-3
DDIM_STEPS = 20
# guidance scales tried on the validation targets, by where J is judged (pipeline.GUIDE_BY)
GUIDANCE_GRIDS = {
    "model": (0.0, 1e2, 1e3, 1e4, 1e5, 3e5, 1e6, 3e6, 1e7),
    "solver": (0.0, 1e2, 1e3, 1e4, 1e5, 3e5, 1e6),
}
DDIM_STEPS_LONG = 50  # as many solver gradients as the longest gradient baseline
LONG_GRID = (0.0, 1e4, 1e5, 3e5, 1e6, 3e6)
ETA0_GRID = (0.0, 1e4, 3e4, 1e5, 2e5, 3e5, 1e6)  # deterministic DDIM (eta 0)
# the guided rows of each diffusion control model: row suffix -> (guide_by, DDIM steps, grid,
# DDIM eta)
GUIDED_ROWS = {
    "": ("model", DDIM_STEPS, GUIDANCE_GRIDS["model"], 1.0),
    "_solver_guided": ("solver", DDIM_STEPS, GUIDANCE_GRIDS["solver"], 1.0),
    f"_solver_guided_ddim{DDIM_STEPS_LONG}": ("solver", DDIM_STEPS_LONG, LONG_GRID, 1.0),
    "_solver_guided_eta0": ("solver", DDIM_STEPS, ETA0_GRID, 0.0),
    f"_solver_guided_ddim{DDIM_STEPS_LONG}_eta0": ("solver", DDIM_STEPS_LONG, ETA0_GRID, 0.0),
}
GRADIENT_STEPS = (10, 20, 50)
GRADIENT_LR = 0.1  # Adam's learning rate for gradient_10 and _20
LR_GRID = (0.1, 0.03)  # Adam learning rates tried on the validation targets
# warm start: an unguided sample (DDIM_STEPS, no solver gradient) then as many Adam steps
# through the solver as gradient_50 takes from no forcing
WARM_STEPS = 50
UNET = {"nx": 64, "nt": 16, "channels": 16, "channel_mult": (1, 2)}


# the models the benchmark trains, by run folder
BUILDERS = {
    "sim-physical_diffusion": lambda: WDNO(WDNOConfig(**UNET, wavelet="none")),
    "sim-fno": lambda: FNO(FNOConfig(nx=64, nt=16, modes=16, width=32, layers=4)),
    "control-wdno": lambda: WDNO(WDNOConfig(**UNET, task="control")),
    "control-physical_diffusion": lambda: WDNO(WDNOConfig(**UNET, wavelet="none", task="control")),
}


def build(name: str):
    torch.manual_seed(0)  # the same initialisation in every process
    return BUILDERS[name]()


def train(
    name: str, method, data, runs: Path, steps: int, ema_warmup: bool = False, start_from=None
) -> tuple[object, float]:
    """Train (or reuse) ``method`` in runs/name; returns the exported model and the CPU seconds
    its training took (stored beside it, so a run that reuses it reports them too).
    ``start_from``: a finished run's folder name whose last checkpoint this run continues from
    (its CPU seconds counted in); with the constant learning rate and the resumable loader that
    is the same training as one run of ``steps`` steps."""
    record = runs / name / "train_cpu.json"
    earlier = 0.0
    if start_from is not None and not (runs / name).exists():
        (runs / name / "checkpoints").mkdir(parents=True)
        shutil.copy(runs / start_from / "checkpoints" / "last.ckpt", runs / name / "checkpoints")
    if start_from is not None:
        earlier = json.loads((runs / start_from / "train_cpu.json").read_text())["cpu_s"]
    start = time.process_time()
    config = TrainConfig(max_steps=steps, batch_size=32, lr=1e-3, seed=0, ema_warmup=ema_warmup)
    train_method(method, data, runs / name, config, progress_bar=False)
    spent = earlier + time.process_time() - start
    if record.is_file():  # a finished run reused: the CPU seconds its training took
        spent = json.loads(record.read_text())["cpu_s"]
    atomic_write_json(record, {"cpu_s": spent})
    return load_method(runs / name / "model"), spent


def cached(path: Path, key: dict, compute) -> dict:
    """``compute()``, or the result stored at ``path`` by an earlier run with the same ``key``
    (the stages of this benchmark can run as separate processes; see ``--part``)."""
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored["key"] == key:
            return stored["result"]
    result = compute()
    atomic_write_json(path, {"key": key, "result": result})
    return result


def wdno_models(args) -> dict[str, Path]:
    """WDNO simulation models by row name: ``--wdno NAME=FOLDER ...``, or the shipped one."""
    if not args.wdno:
        return {"wdno": shipped_model()[0]}
    pairs = dict(item.split("=", 1) for item in args.wdno)
    if "wdno" not in pairs:
        raise SystemExit("--wdno: one model must be named wdno (the one the goals are about)")
    return {name: Path(folder) for name, folder in pairs.items()}


def summary(err: torch.Tensor) -> dict:
    mean, lo, hi = bootstrap_mean(err)
    return {"mean": mean, "ci95": [lo, hi]}


def train_only(name: str, args, train_data) -> int:
    """Train one of the benchmark's models (``--part train:NAME``) and stop."""
    warmup = name.endswith("-ema_warmup")
    name = name.removesuffix("-ema_warmup")
    if name not in BUILDERS or (warmup and not name.startswith("sim")):
        raise SystemExit(
            f"--part train:NAME: NAME is one of {sorted(BUILDERS)} (sim-*: -ema_warmup)"
        )
    steps = args.control_steps if name.startswith("control") else args.sim_steps
    folder = f"{name}-ema_warmup" if warmup else name
    train(folder, build(name), train_data, args.runs, steps, warmup)
    return 0


def simulation(args, train_data, test, problem: ControlProblem) -> dict:
    truth = torch.as_tensor(test.u)
    shock = max_gradient(truth, test.attrs["dx"])
    shock_mask = shock > torch.quantile(shock, SHOCK_QUANTILE)
    models = {}
    for name in ("physical_diffusion", "fno"):
        run = f"sim-{name}"
        models[name] = train(run, build(run), train_data, args.runs, args.sim_steps)
        if args.ema_warmup:  # the same training with an EMA warm-up, side by side
            folder = f"{run}-ema_warmup"
            trained = train(folder, build(run), train_data, args.runs, args.sim_steps, True)
            models[f"{name}_ema_warmup"] = trained
    for name, folder in wdno_models(args).items():  # loaded last: one may still be training
        models[name] = (load_method(folder), None)
    results = {}
    for name, (model, cpu) in models.items():
        start = time.perf_counter()
        pred = predict(model, test.u[:, 0], test.f, steps=DDIM_STEPS, seed=0)
        results[name] = {"seconds_per_trajectory": (time.perf_counter() - start) / len(pred)}
        if cpu is not None:
            results[name]["train_cpu_s"] = cpu
        results[name]["pred"] = torch.as_tensor(pred)
    for nx in (32, 16):
        start = time.perf_counter()
        pred = simulate_coarse(test.u[:, 0], test.f, problem, nx)
        name = f"solver_nx{nx}"
        results[name] = {"seconds_per_trajectory": (time.perf_counter() - start) / len(pred)}
        results[name]["pred"] = torch.as_tensor(pred)
    for r in results.values():
        pred = r.pop("pred")
        err = relative_l2_per_sample(pred, truth, from_time=1)
        r["relative_l2"] = summary(err)
        r["relative_l2_shock"] = summary(err[shock_mask])
        r["relative_l2_final"] = summary(relative_l2_per_sample(pred, truth, truth.shape[1] - 1))
    results["_shock_subset"] = {
        "threshold_max_abs_ux": float(torch.quantile(shock, SHOCK_QUANTILE)),
        "n": int(shock_mask.sum()),
    }
    return results


def resolution_study(args, train_data, test, problem: ControlProblem) -> dict:
    """Zero-shot on a finer grid: the test trajectories (same seed, so the same initial states
    and forcings) generated at FINE_NX points, predicted by the models trained at 64 points
    (``predict_on_grid``: the FNO on the fine grid itself, the diffusion models on 64 points
    between two interpolations), the solver on 64 points interpolated the same way, and the
    64-point test trajectories interpolated (the floor of any 64-point method)."""
    fine = generate_burgers(N_TEST, dataclasses.replace(DATA, nx=FINE_NX), seed=TEST_SEED)
    truth = torch.as_tensor(fine.u)
    suffix = "_ema_warmup" if args.ema_warmup else ""
    models = {"wdno": load_method(wdno_models(args)["wdno"])}
    for name in ("physical_diffusion", "fno"):
        run = f"sim-{name}"
        folder = f"{run}-ema_warmup" if args.ema_warmup else run
        trained = train(folder, build(run), train_data, args.runs, args.sim_steps, args.ema_warmup)
        models[name + suffix] = trained[0]
    preds = {
        name: predict_on_grid(model, fine.u[:, 0], fine.f, steps=DDIM_STEPS, seed=0)
        for name, model in models.items()
    }
    preds[f"solver_nx{DATA.nx}"] = simulate_coarse(fine.u[:, 0], fine.f, problem, DATA.nx)
    preds[f"truth_nx{DATA.nx}_interpolated"] = resample_grid(torch.as_tensor(test.u), FINE_NX)
    results = {}
    for name, pred in preds.items():
        pred = torch.as_tensor(pred)
        results[name] = {
            "relative_l2": summary(relative_l2_per_sample(pred, truth, from_time=1)),
            "relative_l2_final": summary(relative_l2_per_sample(pred, truth, truth.shape[1] - 1)),
        }
    return results


def control_run(method: str, u0, target, problem, nt, **options) -> dict:
    out = control(method, u0, target, problem, nt, **options)
    return {"J": torch.as_tensor(out["J"]), "seconds": out["seconds"]}


def guided_row(
    model, guide_by: str, grid, ddim: int, val, test, problem, nt, eta: float = 1.0
) -> dict:
    """One guided diffusion control row: the guidance scale in ``grid`` with the lowest mean J
    on the validation targets (a scale that drives the solver unstable counts as infinite J),
    then J on the test targets at that scale; ``ddim`` sampling steps of DDIM noise ``eta``."""
    scan = {}
    for g in grid:  # ascending; stop once J has risen above 10x the best (diverging)
        if scan and min(scan.values()) * 10 < list(scan.values())[-1]:
            break
        options = {"model": model, "guidance": g, "guide_by": guide_by, "steps": ddim, "eta": eta}
        try:
            scan[g] = float(control_run("wdno", *val, problem, nt, **options)["J"].mean())
        except InputError as err:  # the forcing broke the solver's stability condition
            scan[g] = float("inf")
            print(f"validation guidance {g:g} ({guide_by}): {err}", flush=True)
        print(f"validation {guide_by} guidance {g:g}: J {scan[g]:.3e}", flush=True)
    best = min(scan, key=scan.get)
    options = {"model": model, "guidance": best, "guide_by": guide_by, "steps": ddim, "eta": eta}
    run = control_run("wdno", *test, problem, nt, **options)
    return {
        "J": summary(run["J"]),
        "seconds_per_trajectory": run["seconds"] / len(run["J"]),
        "guidance": best,
        "guide_by": guide_by,
        "ddim_steps": ddim,
        "eta": eta,
        "validation_J_by_guidance": {str(k): v for k, v in scan.items()},
    }


def lr_scan(method: str, val, problem, nt, **options) -> dict[str, float]:
    """Mean J on the validation targets by Adam learning rate (LR_GRID)."""
    return {
        str(lr): float(control_run(method, *val, problem, nt, lr=lr, **options)["J"].mean())
        for lr in LR_GRID
    }


def warm_start_row(model, val, test, problem, nt) -> dict:
    """The diffusion model's unguided sample (DDIM_STEPS, eta 1) as the starting point of
    WARM_STEPS Adam steps through the solver, the learning rate chosen on validation."""
    options = {"model": model, "guidance": 0.0, "steps": DDIM_STEPS, "refine_steps": WARM_STEPS}
    scan = lr_scan("wdno", val, problem, nt, **options)
    lr = float(min(scan, key=scan.get))
    run = control_run("wdno", *test, problem, nt, lr=lr, **options)
    return {
        "J": summary(run["J"]),
        "seconds_per_trajectory": run["seconds"] / len(run["J"]),
        "lr": lr,
        "validation_J_by_lr": scan,
    }


def coupling(model, guidances, val, problem) -> dict:
    """How far a control model's own trajectory is from what its forcing does, on the
    validation targets, by guidance scale (J judged on the prediction): the relative L2 between
    the sampled u and the solver's trajectory under the sampled f, and J of each."""
    u0, target = (torch.as_tensor(v).float() for v in val)
    out = {}
    for g in guidances:
        generator = torch.Generator().manual_seed(0)
        u, f = model.control(u0, target, guidance=g, energy_weight=ENERGY_WEIGHT,
                             steps=DDIM_STEPS, generator=generator)  # fmt: skip
        u, f, solved = u.double(), f.double(), problem.solve(u0.double(), f.double())
        target64 = target.double()
        out[str(g)] = {
            "u_vs_solver_relative_l2": float(relative_l2_per_sample(u, solved, 1).mean()),
            "J_of_predicted_u": float(
                control_objective(u[:, -1], target64, f, ENERGY_WEIGHT).mean()
            ),
            "J_true": float(control_objective(solved[:, -1], target64, f, ENERGY_WEIGHT).mean()),
            "mean_f2": float(f.square().mean()),
        }
    return out


def control_models(args) -> dict[str, tuple[str, str, int, str | None]]:
    """The diffusion control models by row name: (run folder, builder, training steps, the run
    it continues from). wdno and physical_diffusion: --control-steps each; wdno_N: WDNO trained
    to N steps (--wdno-control-steps), continuing the wdno run."""
    models = {
        name: (f"control-{name}", f"control-{name}", args.control_steps, None)
        for name in ("wdno", "physical_diffusion")
    }
    for steps in args.wdno_control_steps:
        models[f"wdno_{steps}"] = (f"control-wdno-{steps}", "control-wdno", steps, "control-wdno")
    return models


def control_study(args, train_data, val, test, problem: ControlProblem, only=None) -> dict:
    """Every control row (``only``: those of one method, see ``--part``), each stored in --runs
    as it finishes (``cached``)."""
    nt = DATA.nt
    val = (val.u[:N_CONTROL_VALIDATION, 0], val.u[:N_CONTROL_VALIDATION, -1])
    u0, target = test.u[:N_CONTROL, 0], test.u[:N_CONTROL, -1]
    results = {}
    for steps in GRADIENT_STEPS if only in (None, "gradient") else ():
        lr, scan = GRADIENT_LR, None
        if steps == WARM_STEPS:  # the learning rate chosen on validation, as for warm starts
            compute = partial(lr_scan, "gradient", val, problem, nt, steps=steps)
            key = {"n": N_CONTROL_VALIDATION, "lr_grid": list(LR_GRID)}
            scan = cached(args.runs / f"control-gradient_{steps}-lr.json", key, compute)
            lr = float(min(scan, key=scan.get))

        def gradient(steps=steps, lr=lr) -> dict:
            run = control_run("gradient", u0, target, problem, nt, steps=steps, lr=lr)
            return {"J": summary(run["J"]), "seconds_per_trajectory": run["seconds"] / N_CONTROL}

        row = f"gradient_{steps}"
        key = {"n": N_CONTROL} if lr == GRADIENT_LR else {"n": N_CONTROL, "lr": lr}
        results[row] = cached(args.runs / f"control-{row}.json", key, gradient)
        results[row]["lr"] = lr
        if scan is not None:
            results[row]["validation_J_by_lr"] = scan
    for name, (folder, builder, steps, base) in control_models(args).items():
        if only not in (None, name):
            continue
        model, cpu = train(folder, build(builder), train_data, args.runs, steps, start_from=base)
        for suffix, (guide_by, ddim, grid, eta) in GUIDED_ROWS.items():
            row = name + suffix
            compute = partial(guided_row, model, guide_by, grid, ddim, val, (u0, target),
                              problem, nt, eta)  # fmt: skip
            key = {"control_steps": steps, "grid": list(grid), "ddim": ddim}
            if eta != 1.0:  # (rows stored before eta was an option keep their key)
                key["eta"] = eta
            results[row] = cached(args.runs / f"control-{row}.json", key, compute)
            results[row]["train_cpu_s"] = cpu
        compute = partial(warm_start_row, model, val, (u0, target), problem, nt)
        key = {"control_steps": steps, "lr_grid": list(LR_GRID), "refine": WARM_STEPS}
        row = f"{name}_warm_start"
        results[row] = cached(args.runs / f"control-{row}.json", key, compute)
        results[row]["train_cpu_s"] = cpu
        scales = sorted({0.0, 1e5, results[name]["guidance"]})  # none, mid-grid, chosen
        compute = partial(coupling, model, scales, val, problem)
        key = {"control_steps": steps, "scales": list(scales), "ddim": DDIM_STEPS}
        results[name]["coupling"] = cached(
            args.runs / f"control-{name}-coupling.json", key, compute
        )
    zero = torch.zeros(N_CONTROL, nt, DATA.nx, dtype=torch.float64)
    for name, f in (("no_forcing", zero), ("generating_forcing", test.f[:N_CONTROL])):
        f = torch.as_tensor(f).double()
        u = problem.solve(torch.as_tensor(u0).double(), f)
        j = control_objective(u[:, -1], torch.as_tensor(target).double(), f, ENERGY_WEIGHT)
        results[name] = {"J": summary(j)}
    return results


def portable(folder: Path, *, in_command: bool = False) -> str:
    """A model folder as the docs may show it: the shipped one (its path in the repository in a
    command), or the last two parts under ``<runs>`` (e.g. a `benchmarks/pde_tune.py` run)."""
    folder = Path(folder).resolve()
    if folder.is_relative_to(shipped_model()[0].parent.resolve()):
        return str(folder.relative_to(ROOT)) if in_command else f"shipped {folder.name}"
    return f"<runs>/{folder.parent.name}/{folder.name}"


NOTES = [
    "- Training budgets: the shipped WDNO had 4500 steps (267 CPU s), the physical-space model "
    "and the FNO 600 steps (130-150 CPU s each, what this shared machine allowed). An EMA of "
    "decay 0.995 without warm-up still holds 0.995^600 = 5% of the initial weights after 600 "
    "steps; the *_ema_warmup rows train the same models with the core's EMA warm-up "
    "(`--ema-warmup`), and the goals compare WDNO with each baseline's better row. Against the "
    "FNO with warm-up, WDNO ties overall (intervals overlap) with twice its training CPU, and "
    "is better on the shock subset.",
    "- The numerical solver on the 32-point grid beats every learned model overall (at about "
    "1 ms per trajectory), though not on the shock subset, where WDNO is better.",
    '- The 1500-step rows compare the uniform band weighting with `loss_weight="energy"`: '
    "energy won by 16% on the validation set (docs/benchmarks/pde-tuning.md) but not on this "
    "test set. `<runs>` in the command is the `--runs` folder of `python benchmarks/run.py "
    "pde_tune --steps 1500`, which trained them.",
    "- Zero-shot at 128 points: every learned model's error stays what it is at 64 points, "
    "far above the floor of interpolating a 64-point trajectory, so at this size resolution "
    "is not what limits them.",
]


def control_notes(ctl: dict) -> list[str]:
    """The control diagnosis, from the coupling measurements (validation targets)."""
    lines = [
        "- Control training: both control models the same steps (--control-steps); WDNO's "
        "coefficient U-Net costs less per step than the physical-space one "
        f"({ctl['wdno']['train_cpu_s']:.0f} vs {ctl['physical_diffusion']['train_cpu_s']:.0f} "
        "CPU s). At 500 steps (this benchmark's previous version) WDNO's validation J stayed "
        "3.69e-2 at every guidance scale, no better than no forcing: training length was the "
        "first limit. The control goals compare each diffusion model's best guided row.",
    ]
    models = [name for name in ctl if "coupling" in ctl[name]]
    for name in models:
        c = ctl[name]["coupling"]
        parts = [
            f"scale {float(g):g}: predicted u vs solver under the predicted f "
            f"{v['u_vs_solver_relative_l2']:.3f} relative L2, J of the predicted u "
            f"{v['J_of_predicted_u']:.2e}, true J {v['J_true']:.2e}"
            for g, v in c.items()
        ]
        lines.append(f"- Guidance as in WDNO, {name} (validation): " + "; ".join(parts) + ".")
    for name in (m for m in models if m.startswith("wdno")):
        ratios = []
        for suffix in GUIDED_ROWS:
            ours, theirs = (
                ctl[name + suffix]["J"]["mean"],
                ctl["physical_diffusion" + suffix]["J"]["mean"],
            )
            ratios.append(f"{suffix or 'on the prediction'} {ours:.2e} vs {theirs:.2e} "
                          f"({1 - ours / theirs:.0%} lower)")  # fmt: skip
        lines.append(
            f"- {name} ({ctl[name]['train_cpu_s']:.0f} training CPU s) vs the physical-space "
            "model at the same guidance and sampling steps: " + "; ".join(ratios) + "."
        )
    lines.append(
        "- Reading: guidance on the prediction lowers J of the model's own u (the objective it "
        "sees), but the sampled forcing is coupled to the sampled u only loosely, so the true J "
        "hardly follows; judging J through the solver (*_solver_guided) puts the gradient on f "
        "itself. The gradient baseline uses a solver step 4x smaller (room for the forcing to "
        "raise |u|) than the solver-guided sampling (the judging solver's step), which explains "
        "part of its seconds."
    )
    best = {
        name: min((name + suffix for suffix in GUIDED_ROWS), key=lambda r: ctl[r]["J"]["mean"])
        for name in models
    }
    lines.append(
        "- Best guided row per model (the goals): "
        + "; ".join(f"{row} {ctl[row]['J']['mean']:.2e}" for row in best.values())
        + ". Deterministic DDIM (eta 0) keeps what each guidance step moved, where eta 1 "
        "re-draws part of it as fresh noise."
    )
    if "wdno_warm_start" in ctl:
        warm = {name: ctl[f"{name}_warm_start"]["J"] for name in models}
        lines.append(
            f"- Warm starts (hybrid, {WARM_STEPS} solver gradients like gradient_{WARM_STEPS}): "
            + "; ".join(f"{name} {fmt_ci_e(j)}" for name, j in warm.items())
            + f"; gradient_{WARM_STEPS} {fmt_ci_e(ctl[f'gradient_{WARM_STEPS}']['J'])}. A "
            "learned prior's sample is a better starting point than no forcing; which prior "
            "made it matters little once the solver's gradient has done 50 steps."
        )
    lines.append(
        "- Seconds per trajectory are wall times of one thread on the shared machine, measured "
        "in different sessions under very different loads (several jobs at once): compare "
        "them only within a row pair measured together, if at all. Rows already in --runs from "
        "an earlier run with the same settings are reused, not measured again."
    )
    return lines


def fmt_ci(s: dict, digits: int = 4) -> str:
    return f"{s['mean']:.{digits}f} ({s['ci95'][0]:.{digits}f}-{s['ci95'][1]:.{digits}f})"


def fmt_ci_e(s: dict) -> str:
    return f"{s['mean']:.2e} ({s['ci95'][0]:.2e}-{s['ci95'][1]:.2e})"


def report(sim: dict, res: dict, ctl: dict, meta: dict, goals: dict) -> str:
    shock = sim["_shock_subset"]
    grids = "; ".join(
        f"{by}, {ddim} steps, eta {eta:g}: {', '.join(f'{g:g}' for g in grid)}"
        for by, ddim, grid, eta in GUIDED_ROWS.values()
    )
    lines = [
        "# PDE benchmark: 1D forced Burgers, simulation and control", "",
        f"Command: `{meta['command']}` (seed {meta['seed']}); machine: {meta['machine']}.", "",
        f"Data: {meta['data']}. Train {meta['train']}; validation {meta['validation']} (only the "
        "guidance scales of the control models and Adam's learning rates are chosen on it); "
        f"test {meta['test']}.", "",
        "## Simulation (u from u0 and f), test set", "",
        "Relative L2 over t >= 1 per trajectory, mean and 95% bootstrap interval over the "
        f"{meta['n_test']} test trajectories; shock subset: the {shock['n']} test trajectories "
        f"with max |u_x| over t >= 1 above the {SHOCK_QUANTILE:.0%} quantile "
        f"({shock['threshold_max_abs_ux']:.1f}). Diffusion models sample with DDIM "
        f"({DDIM_STEPS} steps, eta 1).", "",
        "| method | relative L2 | shock subset | final time | s / trajectory | training |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, r in sim.items():
        if name.startswith("_"):
            continue
        trained = meta["training"].get(name, "")
        if "train_cpu_s" in r and r["train_cpu_s"] > 0:
            trained += f", {r['train_cpu_s']:.0f} CPU s"
        lines.append(
            f"| {name} | {fmt_ci(r['relative_l2'])} | {fmt_ci(r['relative_l2_shock'])} | "
            f"{fmt_ci(r['relative_l2_final'])} | {r['seconds_per_trajectory']:.4f} | {trained} |"
        )
    lines += [
        "", f"## Zero-shot on a finer grid ({FINE_NX} points), test set", "",
        f"The same {meta['n_test']} test trajectories generated at {FINE_NX} points (same "
        f"seed: the same initial states and forcings); models trained at {DATA.nx} points. "
        "The FNO rolls out on the fine grid itself; the diffusion models and the solver work "
        f"on {DATA.nx} points between two linear interpolations (`predict_on_grid`; WDNO's "
        f"super-resolution model is not built). truth_nx{DATA.nx}_interpolated: the "
        f"{DATA.nx}-point test trajectories interpolated, the floor of any {DATA.nx}-point "
        "method.", "",
        "| method | relative L2 | final time |", "|---|---|---|",
    ]  # fmt: skip
    for name, r in res.items():
        lines.append(f"| {name} | {fmt_ci(r['relative_l2'])} | {fmt_ci(r['relative_l2_final'])} |")
    lines += [
        "", "## Control (reach the target's final state), test set", "",
        f"J = mean_x (u(T) - u*)^2 + {ENERGY_WEIGHT:g} mean f^2, u by the true solver under the "
        f"returned forcing; mean and 95% bootstrap interval over {meta['n_control']} targets "
        f"(the first test trajectories' final states). Diffusion rows: guidance with J judged "
        f"on the model's predicted final state (as in WDNO; rows wdno, physical_diffusion) or "
        f"on the solver's final state under the predicted forcing (*_solver_guided), DDIM "
        f"{DDIM_STEPS} steps (*_ddim{DDIM_STEPS_LONG}: {DDIM_STEPS_LONG}), eta 1 (*_eta0: "
        "deterministic DDIM); wdno_N: the WDNO control model trained to N steps (about the "
        "physical-space model's training CPU: equal training cost); the scale with the "
        f"lowest mean J on {N_CONTROL_VALIDATION} validation targets, from {grids} (a scan "
        "stops once J rises above 10x its best). gradient_N: "
        f"N Adam steps through the solver from no forcing (as many solver gradients as a "
        f"solver-guided sample of N DDIM steps; lr {GRADIENT_LR:g}, for N = {WARM_STEPS} "
        f"chosen on validation from {', '.join(map(str, LR_GRID))}). *_warm_start: the "
        f"model's unguided sample ({DDIM_STEPS} DDIM steps, no solver gradient) as the "
        f"starting point of {WARM_STEPS} such Adam steps (lr chosen the same way): a hybrid "
        f"with gradient_{WARM_STEPS}'s solver-gradient budget, not a diffusion sampler; the "
        "goals on the guided rows leave it out.", "",
        "| method | J | s / trajectory | guidance | validation J: no guidance -> chosen (or by "
        "Adam lr) | training |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, r in ctl.items():
        guidance, scan, trained = "", "", ""
        if "guidance" in r:
            guidance = f"{r['guidance']:g}"
            by = r["validation_J_by_guidance"]
            scan = f"{by['0.0']:.2e} -> {by[str(r['guidance'])]:.2e}"
            trained = meta["training"]["control_" + name.split("_solver_guided")[0]]
            trained += f", {r['train_cpu_s']:.0f} CPU s"
        elif "validation_J_by_lr" in r:
            guidance = f"Adam lr {r['lr']:g}"
            scan = ", ".join(f"lr {k}: {v:.2e}" for k, v in r["validation_J_by_lr"].items())
            if name.endswith("_warm_start"):
                trained = meta["training"]["control_" + name.removesuffix("_warm_start")]
                trained += f", {r['train_cpu_s']:.0f} CPU s"
        seconds = f"{r['seconds_per_trajectory']:.3f}" if "seconds_per_trajectory" in r else ""
        lines.append(
            f"| {name} | {fmt_ci_e(r['J'])} | {seconds} | {guidance} | {scan} | {trained} |"
        )
    lines += ["", "## Goals (issue 17)", "", "| goal | met |", "|---|---|"]
    lines += [f"| {k} | {'yes' if v else 'no'} |" for k, v in goals.items()]
    lines += ["", "## Read with care", "", *NOTES, *control_notes(ctl)]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pde")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "pde" / "bench")
    parser.add_argument(
        "--wdno", nargs="*", default=[],
        help="WDNO simulation models as NAME=FOLDER (one named wdno; default: the shipped one)",
    )  # fmt: skip
    parser.add_argument("--sim-steps", type=int, default=600)
    parser.add_argument("--control-steps", type=int, default=2000)
    parser.add_argument(
        "--wdno-control-steps", type=int, nargs="*", default=[],
        help="also WDNO control models trained to these steps (rows wdno_N; they continue the "
             "--control-steps run): the physical-space model's training CPU buys WDNO ~3x "
             "the steps",
    )  # fmt: skip
    parser.add_argument(
        "--ema-warmup", action="store_true",
        help="also train the simulation baselines with an EMA warm-up (rows *_ema_warmup)",
    )  # fmt: skip
    parser.add_argument(
        "--part", default="all",
        help="all (default), control, simulation or resolution (one stage, stored in --runs and "
             "reused by a later full run), control:NAME (the control rows of gradient, wdno or "
             "physical_diffusion), or train:NAME (one model: sim-fno, sim-physical_diffusion, "
             "control-wdno, control-physical_diffusion); to spread the work over processes",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train_data = generate_burgers(N_TRAIN, DATA, seed=TRAIN_SEED)
    test = generate_burgers(N_TEST, DATA, seed=TEST_SEED)
    val = generate_burgers(N_VALIDATION, DATA, seed=VALIDATION_SEED)
    problem = ControlProblem(DATA.t_end, DATA.nu, ENERGY_WEIGHT, None, DATA.boundary)
    models = wdno_models(args)
    if args.part.startswith("train:"):
        return train_only(args.part.removeprefix("train:"), args, train_data)
    if args.part.startswith("control:"):
        only = args.part.removeprefix("control:")
        parts = ("gradient", *control_models(args))
        if only not in parts:
            raise SystemExit(f"--part control:NAME: NAME is one of {parts}")
        control_study(args, train_data, val, test, problem, only)
        return 0
    rows = {
        suffix: [by, ddim, list(grid), eta] for suffix, (by, ddim, grid, eta) in GUIDED_ROWS.items()
    }
    ctl_key = {"control_steps": args.control_steps, "rows": rows}
    if args.wdno_control_steps:
        ctl_key["wdno_control_steps"] = args.wdno_control_steps
    sim_key = {"sim_steps": args.sim_steps, "wdno": {k: str(v) for k, v in models.items()}}
    if args.ema_warmup:
        sim_key["ema_warmup"] = True
    if args.part in ("all", "control"):
        ctl = cached(args.runs / "control.json", ctl_key,
                     lambda: control_study(args, train_data, val, test, problem))  # fmt: skip
    if args.part in ("all", "simulation"):
        sim = cached(args.runs / "simulation.json", sim_key,
                     lambda: simulation(args, train_data, test, problem))  # fmt: skip
    if args.part in ("all", "resolution"):
        res = cached(args.runs / "resolution.json", {**sim_key, "fine_nx": FINE_NX},
                     lambda: resolution_study(args, train_data, test, problem))  # fmt: skip
    if args.part != "all":
        return 0
    command = "python benchmarks/run.py pde"
    if args.wdno:  # <runs>: the --runs folder of benchmarks/pde_tune.py
        shown = (f"{k}={portable(v, in_command=True)}" for k, v in models.items())
        command += " --wdno " + " ".join(shown)
    if args.sim_steps != 600 or args.control_steps != 2000:
        command += f" --sim-steps {args.sim_steps} --control-steps {args.control_steps}"
    if args.ema_warmup:
        command += " --ema-warmup"
    if args.wdno_control_steps:
        command += " --wdno-control-steps " + " ".join(map(str, args.wdno_control_steps))
    batch = "batch 32, AdamW lr 1e-3, EMA 0.995, seed 0"
    meta = {
        "command": command, "seed": 0, "machine": "2 shared CPU cores, no GPU, one thread",
        "data": "generate_burgers nx 64, nt 16, t in [0, 1], nu 0.01, Dirichlet",
        "train": f"{N_TRAIN} trajectories (seed {TRAIN_SEED})",
        "validation": f"{N_VALIDATION} trajectories (seed {VALIDATION_SEED}), "
                      f"{N_CONTROL_VALIDATION} used for control",
        "test": f"{N_TEST} trajectories (seed {TEST_SEED})",
        "n_test": N_TEST, "n_control": N_CONTROL, "energy_weight": ENERGY_WEIGHT,
        "ddim_steps": DDIM_STEPS,
        "training": {
            **{name: portable(folder) for name, folder in models.items()},
            "physical_diffusion": f"{args.sim_steps} steps, {batch}",
            "fno": f"{args.sim_steps} steps, {batch}",
            "physical_diffusion_ema_warmup": f"{args.sim_steps} steps, {batch}, EMA warm-up",
            "fno_ema_warmup": f"{args.sim_steps} steps, {batch}, EMA warm-up",
            "control_wdno": f"{args.control_steps} steps, {batch}",
            "control_physical_diffusion": f"{args.control_steps} steps, {batch}",
            **{
                f"control_wdno_{n}": f"{n} steps, {batch} (continuing control_wdno)"
                for n in args.wdno_control_steps
            },
        },
    }  # fmt: skip
    # each baseline's best variant (with or without the EMA warm-up)
    rel, shock = {}, {}
    for key, r in sim.items():
        if key.startswith("_"):
            continue
        base = key.removesuffix("_ema_warmup")
        rel[base] = min(rel.get(base, float("inf")), r["relative_l2"]["mean"])
        shock[base] = min(shock.get(base, float("inf")), r["relative_l2_shock"]["mean"])
    j = {k: v["J"]["mean"] for k, v in ctl.items()}
    # each diffusion model's best guided row (guidance on its prediction or through the solver)
    best = {name: min(j[name + suffix] for suffix in GUIDED_ROWS) for name in control_models(args)}
    wdno_j, physical_j = best["wdno"], best["physical_diffusion"]
    goals = {
        "simulation_wdno_below_physical_diffusion": rel["wdno"] < rel["physical_diffusion"],
        "simulation_wdno_below_fno": rel["wdno"] < rel["fno"],
        "shock_wdno_below_physical_diffusion": shock["wdno"] < shock["physical_diffusion"],
        "shock_wdno_below_fno": shock["wdno"] < shock["fno"],
        "control_wdno_J_20pct_below_physical_diffusion": wdno_j <= 0.8 * physical_j,
        "control_wdno_J_below_gradient_50": min(v for k, v in best.items() if k.startswith("wdno"))
        < j["gradient_50"],
    }
    if "wdno_warm_start" in j:  # the hybrid, judged on its own
        goals["control_wdno_warm_start_J_below_gradient_50"] = (
            min(j[f"{name}_warm_start"] for name in best if name.startswith("wdno"))
            < j["gradient_50"]
        )
        goals["control_wdno_warm_start_J_20pct_below_physical_diffusion_warm_start"] = (
            j["wdno_warm_start"] <= 0.8 * j["physical_diffusion_warm_start"]
        )
    for n in args.wdno_control_steps:  # WDNO trained for about the physical model's CPU time
        goals[f"control_wdno_{n}_J_20pct_below_physical_diffusion"] = (
            best[f"wdno_{n}"] <= 0.8 * physical_j
        )
        goals[f"control_wdno_{n}_warm_start_J_20pct_below_physical_diffusion_warm_start"] = (
            j[f"wdno_{n}_warm_start"] <= 0.8 * j["physical_diffusion_warm_start"]
        )
    out = ROOT / "docs" / "benchmarks"
    results = {"simulation": sim, "resolution": res, "control": ctl}
    atomic_write_json(out / "pde.json", {**meta, **results, "goals": goals})
    atomic_write_text(out / "pde.md", report(sim, res, ctl, meta, goals))
    print(goals)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
