"""PDE trajectories: wavelet diffusion neural operators for simulation and control (WDNO)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

if TYPE_CHECKING:
    from polydiff.core import Method
    from polydiff.pde.data import PDEData

log = logging.getLogger(__name__)


def _input(value: Any, option: str) -> Path:
    """An option's existing file or folder, relative to the directory `polydiff` started in."""
    from hydra.utils import to_absolute_path

    if value is None:
        raise ConfigError(f"{option}=<path> is required")
    path = Path(to_absolute_path(str(value)))
    if not path.exists():
        raise ConfigError(f"{option}={value}: no such file or folder")
    return path


def _output(value: Any, option: str, default: Path) -> Path:
    """Where a verb writes a file: `default` (in the run folder) or the option's path, refused
    before any work when it is a folder or lies under a regular file."""
    from hydra.utils import to_absolute_path

    if value is None:
        return default
    path = Path(to_absolute_path(str(value)))
    if path.is_dir():
        raise ConfigError(f"{option}={value}: is a folder, expected a file path")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{option}={value}: {parent} is a file, not a folder")
    return path


def _dataset(value: Any, option: str) -> PDEData:
    from polydiff.pde.pipeline import read_trajectories

    return read_trajectories(_input(value, option))  # its InputErrors name the file


def _model(value: Any) -> Method:
    """A saved pde model (train's <run>/model); anything else is one line naming `model`."""
    from polydiff.core import load_method

    folder = _input(value, "model")
    try:
        return load_method(folder, domain="pde")
    except (ValueError, FileNotFoundError, KeyError) as err:
        raise ConfigError(f"model={value}: {err}") from None


def _positive(cfg: DictConfig, *keys: str) -> None:
    """Each dotted option an integer >= 1, else a ConfigError naming it."""
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")


def _build_method(cfg: DictConfig, data: PDEData, source: Path) -> Method:
    """The configured WDNO (or physical-space, wavelet=none) or FNO for the data's grid."""
    from polydiff.core.errors import InputError
    from polydiff.pde.fno import FNO, FNOConfig
    from polydiff.pde.wdno import WDNO, WDNOConfig

    nt, nx = data.u.shape[1:]
    try:
        if cfg.method == "wdno":
            options = OmegaConf.to_container(cfg.wdno, resolve=True)
            options["channel_mult"] = tuple(options["channel_mult"])
            return WDNO(WDNOConfig(nx=nx, nt=nt, **options))
        if cfg.method == "fno":
            return FNO(FNOConfig(nx=nx, nt=nt, **OmegaConf.to_container(cfg.fno, resolve=True)))
    except InputError as err:  # sizes the wavelet / U-Net depth cannot divide come from the data
        sizes = str(err).startswith(("nt:", "nx:", "modes:"))
        raise (InputError(f"{source}: {err}") if sizes else err) from None
    raise ConfigError(f"method={cfg.method!r}: expected wdno | fno")


def _grid_panels(truth, pred, count: int) -> dict[str, Any]:
    panels: dict[str, Any] = {}
    for i in range(min(count, len(pred))):
        if truth is not None:
            panels[f"truth {i}"] = truth[i]
        panels[f"prediction {i}"] = pred[i]
    return panels


@verb("data")
def data(cfg: DictConfig, run_dir: Path) -> None:
    """Generate a Burgers (or advection) dataset into an HDF5 file in the polydiff layout.

    Burgers: DiffPhyCon's random initial states and space-time forcings, solved by
    polydiff.pde.solvers (a step dt that breaks the stability condition is refused, naming the
    largest stable one); advection: exact shifts of random sine sums. Writes data.h5 (or output=)
    with u, f, x, t and the parameters as attributes (docs/pde.md).
    """
    from polydiff.pde.data import BurgersConfig, generate_advection, generate_burgers, write_dataset

    out = _output(cfg.output, "output", run_dir / "data.h5")
    _positive(cfg, "n", "nx")
    start = time.perf_counter()
    if cfg.equation == "burgers":
        config = BurgersConfig(nx=cfg.nx, nt=cfg.nt, t_end=cfg.t_end, nu=cfg.nu, dt=cfg.dt)
        dataset = generate_burgers(cfg.n, config, seed=cfg.seed)
    elif cfg.equation == "advection":
        sizes = {"nx": cfg.nx, "nt": cfg.nt, "t_end": cfg.t_end}
        dataset = generate_advection(cfg.n, **sizes, c=cfg.c, seed=cfg.seed)
    else:
        raise ConfigError(f"equation={cfg.equation!r}: expected burgers | advection")
    write_dataset(out, dataset)
    n, nt, nx = dataset.u.shape
    seconds = time.perf_counter() - start
    log.info("%s: %d trajectories of %d x %d (nt x nx) in %.1f s -> %s", cfg.equation, n, nt, nx,
             seconds, out)  # fmt: skip


@verb("train", positional="data")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train WDNO, its physical-space variant or the FNO on an HDF5 dataset (-> <run>/model).

    wdno.wavelet=none trains the physical-space diffusion, method=fno the FNO, wdno.task=control
    the control model; the dataset is in the polydiff layout or PDEBench's.

    Runs polydiff.pde.train.train_method (EMA, resumable: rerun with the same hydra.run.dir) and
    prints the exported model's loss on the data (fixed noise and times, so a resumed or
    finished run prints the same number). `polydiff pde simulate model=<run>/model` uses it.
    """
    from polydiff.core import load_method
    from polydiff.core.errors import check_number
    from polydiff.pde.pipeline import model_loss, subset
    from polydiff.pde.train import TrainConfig, train_method

    t = cfg.train
    _positive(cfg, "train.steps", "train.batch_size", "train.checkpoint_every")
    check_number("train.lr", t.lr, positive=True)
    source = _input(cfg.data, "data")
    dataset = subset(_dataset(cfg.data, "data"), cfg.max_trajectories)
    method = _build_method(cfg, dataset, source)
    recipe = TrainConfig(
        max_steps=t.steps, batch_size=t.batch_size, lr=t.lr, warmup_steps=t.warmup,
        ema_decay=t.ema, ema_warmup=bool(t.ema_warmup), checkpoint_every=t.checkpoint_every,
        seed=cfg.seed,
    )  # fmt: skip
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    train_method(method, dataset, run_dir, recipe, **trainer)
    loss = model_loss(load_method(run_dir / "model"), dataset, seed=cfg.seed)
    log.info("final loss %.4g (%s, exported weights, %d trajectories) -> %s", loss, cfg.method,
             min(len(dataset.u), 256), run_dir / "model")  # fmt: skip


@verb("simulate")
def simulate(cfg: DictConfig, run_dir: Path) -> None:
    """Predict whole trajectories with a trained model; score them when the truth is known.

    The initial states and forcings come from data=<HDF5>, or initial=<.npy> gives states
    ([nx] or [B, nx]) without forcing.

    Writes predictions.h5 (or output=; polydiff layout, u = the predictions), heatmap.png
    (truth and prediction of the first trajectories on one colour scale) and, when the truth is
    known, error.png and metrics.json (relative L2, MSE, final-time and band errors, t >= 1).
    """
    import numpy as np

    from polydiff.core.io import atomic_write_json
    from polydiff.pde.data import PDEData, write_dataset
    from polydiff.pde.pipeline import check_fits, forcing_of, predict, score, subset
    from polydiff.pde.plots import plot_space_time
    from polydiff.pde.solvers import grid_1d, output_times

    out = _output(cfg.output, "output", run_dir / "predictions.h5")
    _positive(cfg, "steps", "batch_size")
    if (cfg.data is None) == (cfg.initial is None):
        raise ConfigError("give either data=<HDF5 dataset> or initial=<.npy state>, not both")
    model = _model(cfg.model)
    nt, nx = model.config.nt, model.config.nx
    truth = None
    if cfg.data is not None:
        source = _input(cfg.data, "data")
        truth = subset(_dataset(cfg.data, "data"), cfg.n)
        check_fits(model, truth, str(source))
        u0, f, x, t = truth.u[:, 0], forcing_of(truth), truth.x, truth.t
    else:
        source = _input(cfg.initial, "initial")
        try:
            u0 = np.atleast_2d(np.load(source, allow_pickle=False)).astype(np.float32)
        except (ValueError, OSError) as err:
            raise ConfigError(f"initial={cfg.initial}: not a .npy array ({err})") from None
        if u0.ndim != 2 or u0.shape[1] != nx or not np.isfinite(u0).all():
            raise ConfigError(f"initial={cfg.initial}: expected finite [nx] or [B, nx] with "
                              f"nx = {nx}, got shape {u0.shape}")  # fmt: skip
        f = np.zeros((len(u0), nt, nx), np.float32)
        x, t = grid_1d(nx, "dirichlet").numpy(), output_times(cfg.t_end, nt).numpy()
    pred = predict(model, u0, f, steps=cfg.steps, eta=cfg.eta, batch_size=cfg.batch_size,
                   seed=cfg.seed)  # fmt: skip
    attrs = {"dt": float(t[1] - t[0]), "dx": float(x[1] - x[0]), "source": str(source)}
    attrs |= {} if truth is None else {k: v for k, v in truth.attrs.items() if k not in attrs}
    write_dataset(out, PDEData(u=pred, x=x, t=t, f=f, attrs=attrs))
    plot_space_time(run_dir / "heatmap.png", _grid_panels(None if truth is None else truth.u,
                    pred, 2), x, t, "truth and prediction")  # fmt: skip
    if truth is None:
        log.info("%d trajectories predicted -> %s", len(pred), out)
        return
    metrics = score(PDEData(u=pred, x=x, t=t), truth, str(out))
    atomic_write_json(run_dir / "metrics.json", metrics)
    errors = {f"error {i}": pred[i] - truth.u[i] for i in range(min(2, len(pred)))}
    plot_space_time(run_dir / "error.png", errors, x, t, "prediction - truth")
    log.info("%d trajectories: relative L2 %.4f (t >= 1), final-time relative L2 %.4f -> %s",
             len(pred), metrics["relative_l2"], metrics["relative_l2_final"], out)  # fmt: skip


@verb("control")
def control(cfg: DictConfig, run_dir: Path) -> None:
    """Control Burgers trajectories to their final states by WDNO guidance or gradient descent.

    The forcings steer the dataset's initial states to its final states: WDNO guidance
    (model=<a WDNO trained with wdno.task=control>; wdno.guide_by=model judges J on the
    predicted final state as WDNO does, solver on the solver's under the predicted forcing)
    and/or the gradient baseline (Adam through the differentiable solver).

    Every forcing is judged by the true solver: J = mean_x (u(T) - target)^2 + energy_weight *
    mean f^2. Writes control_<method>.h5 (polydiff layout: the forcing and the trajectory it
    produces), controls.png (forcings and trajectories of the first sample) and metrics.json
    (mean J, J per sample and seconds per method; wdno's guidance settings).
    """
    import numpy as np

    from polydiff.core.io import atomic_write_json
    from polydiff.pde.data import PDEData, write_dataset
    from polydiff.pde.pipeline import GUIDE_BY, check_fits, control_problem, subset
    from polydiff.pde.pipeline import control as run_control
    from polydiff.pde.plots import plot_space_time

    _positive(cfg, "n", "wdno.steps", "gradient.steps")
    methods = list(cfg.methods)
    for name in methods:
        if name not in ("wdno", "gradient"):
            raise ConfigError(f"methods: unknown control method {name!r} (wdno | gradient)")
    if not methods:
        raise ConfigError("methods: give at least one of wdno | gradient")
    if cfg.wdno.guide_by not in GUIDE_BY:
        raise ConfigError(f"wdno.guide_by: expected one of {GUIDE_BY}, got {cfg.wdno.guide_by!r}")
    source = _input(cfg.data, "data")
    truth = subset(_dataset(cfg.data, "data"), cfg.n)
    problem = control_problem(truth, cfg.energy_weight)
    model = _model(cfg.model) if "wdno" in methods else None
    if model is not None:
        check_fits(model, truth, str(source))
    nt = truth.u.shape[1]
    u0, target = truth.u[:, 0], truth.u[:, -1]
    results, panels = {}, {"data forcing": truth.f[0] if truth.f is not None else None}
    trajectories = {"data": truth.u[0]}
    for name in methods:
        options = OmegaConf.to_container(cfg[name], resolve=True)  # the library's keywords
        out = run_control(name, u0, target, problem, nt, model=model, seed=cfg.seed, **options)
        attrs = {"dt": float(truth.t[1] - truth.t[0]), "dx": float(truth.x[1] - truth.x[0])}
        attrs |= {"nu": problem.nu, "energy_weight": problem.energy_weight, "method": name}
        result = PDEData(u=out["u"], x=truth.x, t=truth.t, f=out["f"], attrs=attrs)
        write_dataset(run_dir / f"control_{name}.h5", result)
        results[name] = {"J": float(np.mean(out["J"])), "J_per_sample": out["J"].tolist(),
                         "seconds": out["seconds"]}  # fmt: skip
        if name == "wdno":
            results[name] |= {k: options[k] for k in ("guidance", "guide_by", "eta")}
            results[name] |= {"refine_steps": r} if (r := options["refine_steps"]) else {}
        panels[f"{name} forcing"], trajectories[name] = out["f"][0], out["u"][0]
        log.info("%s: J = %.4g (true solver, mean of %d), %.1f s", name, results[name]["J"],
                 len(u0), out["seconds"])  # fmt: skip
    payload = {"methods": results, "n": len(u0), "energy_weight": problem.energy_weight}
    atomic_write_json(run_dir / "metrics.json", payload)
    panels = {k: v for k, v in panels.items() if v is not None}
    plot_space_time(run_dir / "controls.png", panels, truth.x, truth.t, "forcings, sample 0")
    plot_space_time(run_dir / "trajectories.png", trajectories, truth.x, truth.t,
                    "trajectories under each forcing (true solver), sample 0")  # fmt: skip


@verb("evaluate")
def evaluate(cfg: DictConfig, run_dir: Path) -> None:
    """Errors of predicted trajectories against a dataset: metrics.json.

    MSE, relative L2, nRMSE and fRMSE in the low / mid / high bands over t >= from_time, and
    the final-time MSE and relative L2 (polydiff.pde.metrics); predictions (e.g. simulate's
    predictions.h5) are compared with the first as many trajectories of data.
    """
    from polydiff.core.io import atomic_write_json
    from polydiff.pde.pipeline import score

    source = _input(cfg.predictions, "predictions")
    pred = _dataset(cfg.predictions, "predictions")
    truth = _dataset(cfg.data, "data")
    metrics = score(pred, truth, str(source), cfg.from_time)
    atomic_write_json(run_dir / "metrics.json", metrics)
    log.info(
        "%d trajectories: relative L2 %.4f, MSE %.3g, final-time relative L2 %.4f",
        metrics["n"],
        metrics["relative_l2"],
        metrics["mse"],
        metrics["relative_l2_final"],
    )


def _train_pair(cfg: DictConfig, train_data: PDEData, run_dir: Path) -> dict[str, Path]:
    """Train the demo's WDNO and FNO (train.steps each); their exported folders."""
    from polydiff.pde.train import TrainConfig, train_method

    t = cfg.train
    recipe = TrainConfig(max_steps=t.steps, batch_size=t.batch_size, lr=t.lr, seed=cfg.seed)
    for name in ("wdno", "fno"):
        method = _build_method(OmegaConf.merge(cfg, {"method": name}), train_data, Path("data"))
        train_method(method, train_data, run_dir / name, recipe, progress_bar=False)
    return {name: run_dir / name / "model" for name in ("wdno", "fno")}


@demo_stage(quick=("n_test=8", "steps=10"))
@verb("demo")
def demo(cfg: DictConfig, run_dir: Path) -> StageResult:
    """Burgers simulation by the shipped WDNO (or models trained here): heat maps and metrics.

    Predicts held-out trajectories and reports relative L2, final-time and band errors.

    model=shipped: the shipped 1D Burgers WDNO (polydiff.pde checkpoints/burgers-wdno-64) on
    n_test fresh trajectories of its data distribution (seed + 1; it was trained on seed 0).
    model=train: generate n_train trajectories of nt x nx, train a WDNO and an FNO for
    train.steps each, and compare them. Writes metrics.json and heatmap.png / error.png.
    """
    from polydiff.core import load_method
    from polydiff.core.io import atomic_write_json
    from polydiff.pde.data import BurgersConfig, PDEData, generate_burgers
    from polydiff.pde.pipeline import predict, score, shipped_model
    from polydiff.pde.plots import plot_space_time

    _positive(cfg, "n_train", "n_test", "train.steps", "steps")
    if cfg.model == "shipped":
        folder, config = shipped_model()
        models, origin = {"wdno": folder}, f"the shipped WDNO ({folder.name})"
    elif cfg.model == "train":
        config = BurgersConfig(nx=cfg.nx, nt=cfg.nt, t_end=cfg.t_end)
        models = _train_pair(cfg, generate_burgers(cfg.n_train, config, seed=cfg.seed), run_dir)
        origin = f"WDNO and FNO trained here ({cfg.n_train} trajectories, {cfg.train.steps} steps)"
    else:
        raise ConfigError(f"model={cfg.model!r}: expected shipped | train")
    test = generate_burgers(cfg.n_test, config, seed=cfg.seed + 1)
    metrics, preds = {}, {}
    for name, folder in models.items():
        start = time.perf_counter()
        preds[name] = predict(load_method(folder), test.u[:, 0], test.f, steps=cfg.steps,
                              seed=cfg.seed)  # fmt: skip
        metrics[name] = score(PDEData(u=preds[name], x=test.x, t=test.t), test, name)
        metrics[name]["sample_seconds"] = time.perf_counter() - start
    atomic_write_json(run_dir / "metrics.json", metrics)
    panels = {"truth": test.u[0], **{k.upper(): v[0] for k, v in preds.items()}}
    plot_space_time(run_dir / "heatmap.png", panels, test.x, test.t, "held-out trajectory 0")
    errors = {f"{k.upper()} - truth": v[0] - test.u[0] for k, v in preds.items()}
    plot_space_time(run_dir / "error.png", errors, test.x, test.t, "error, trajectory 0")
    rows = "\n".join(
        f"| {name.upper()} | {m['relative_l2']:.4f} | {m['relative_l2_final']:.4f} | "
        f"{m['frmse_low']:.4f} / {m['frmse_mid']:.4f} / {m['frmse_high']:.4f} | "
        f"{m['sample_seconds']:.1f} |"
        for name, m in metrics.items()
    )
    markdown = (
        f"1D forced Burgers (nu = {config.nu}), {cfg.n_test} held-out trajectories of "
        f"{config.nt} x {config.nx} (t x x) predicted from their initial states and forcings by "
        f"{origin}; WDNO sampled with {cfg.steps} DDIM steps; errors over t >= 1.\n\n"
        "| model | relative L2 | final-time relative L2 | fRMSE low / mid / high | "
        f"predict s |\n|---|---|---|---|---|\n{rows}"
    )
    headline = {f"{k.upper()} rel L2": round(v["relative_l2"], 4) for k, v in metrics.items()}
    plots = [("Held-out trajectory 0: truth and prediction", run_dir / "heatmap.png"),
             ("Prediction error of trajectory 0", run_dir / "error.png")]  # fmt: skip
    return StageResult(headline, markdown, plots, metrics)
