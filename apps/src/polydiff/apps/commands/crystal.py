"""Crystals: crystal structure prediction and generation with periodic Bayesian flows (CrysBFN)
(plumbing only: each verb reads its options into polydiff.crystal.workflow calls)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

if TYPE_CHECKING:
    from polydiff.crystal.data import Crystals
    from polydiff.crystal.workflow import Sampled, Trained, TrainRecipe

log = logging.getLogger(__name__)


def _path(value: Any, option: str) -> Path:
    """An option's path, relative to the directory `polydiff` was started in."""
    from hydra.utils import to_absolute_path

    if value is None or str(value) == "":
        raise ConfigError(f"{option}=<path> is required")
    return Path(to_absolute_path(str(value)))


def _read(cfg: DictConfig, source: Any, option: str, **checks: Any) -> Crystals:
    """Crystals from a CSV / CIF folder option (or `synthetic` for data.source)."""
    from polydiff.crystal.workflow import SYNTHETIC, read_structures

    where = source if str(source) == SYNTHETIC else _path(source, option)
    limit = OmegaConf.select(cfg, "limit")
    return read_structures(where, limit=limit, **checks)


def _output(cfg: DictConfig, run_dir: Path, default: str) -> Path:
    return run_dir / default if cfg.output is None else _path(cfg.output, "output")


def _training_set(cfg: DictConfig) -> Crystals:
    from polydiff.crystal.workflow import SYNTHETIC, read_structures

    d = cfg.data
    source = d.source if str(d.source) == SYNTHETIC else _path(d.source, "data.source")
    return read_structures(
        source, limit=d.limit, n_synthetic=d.n_synthetic, seed=cfg.seed, max_atoms=d.max_atoms
    )


def _recipe(cfg: DictConfig) -> TrainRecipe:
    from polydiff.core.errors import InputError
    from polydiff.crystal.workflow import TrainRecipe

    t = cfg.train
    try:
        return TrainRecipe(
            steps=t.steps,
            batch_size=t.batch_size,
            lr=t.lr,
            ema=t.ema,
            checkpoint_every=t.checkpoint_every,
            seed=cfg.seed,
            ema_warmup=t.ema_warmup,
        )
    except InputError as err:
        raise ConfigError(f"train.{err}") from None


def _train(
    cfg: DictConfig, run_dir: Path, crystals: Crystals, task: str, method: str = "crysbfn"
) -> Trained:
    """Train `method` for `task` with cfg.model / cfg.train / cfg.trainer; export to cfg.export
    when the config has one (else <run_dir>/model)."""
    from polydiff.crystal.workflow import train

    t, recipe = cfg.train, _recipe(cfg)
    options = {"task": task, **OmegaConf.to_container(cfg.model, resolve=True)}
    export = OmegaConf.select(cfg, "export")
    export = run_dir / "model" if export is None else _path(export, "export")
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    log.info("training %s (%s) on %d crystals", method, task, len(crystals))
    return train(
        crystals,
        run_dir / "train",
        method=method,
        options=options,
        recipe=recipe,
        export_to=export,
        progress_bar=t.progress_bar,
        **trainer,
    )


@verb("train", positional="data.source")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train CrysBFN (or method=diffcsp) on a CSV of CIFs, a CIF folder or synthetic crystals.

    `polydiff crystal train data.csv` reads a CDVAE/DiffCSP CSV (a `cif` column, e.g. perov-5's
    val.csv) or a folder of .cif files; data.source=synthetic draws pyxtal crystals. Trains
    through polydiff.core.train (rerun with the same hydra.run.dir to resume from
    train/checkpoints/last.ckpt), exports the EMA weights to <run>/model (or export=) and prints
    the exported model's mean training loss.
    """
    from polydiff.core.io import atomic_write_json

    _recipe(cfg)  # bad options end the run before the data is read
    trained = _train(cfg, run_dir, _training_set(cfg), cfg.task, cfg.method)
    parts = {k: round(v, 4) for k, v in trained.parts.items()}
    info = {"loss": trained.loss, "parts": trained.parts, "steps": trained.steps}
    atomic_write_json(run_dir / "train.json", {**info, "model": str(trained.folder)})
    log.info("final loss %.4f %s after %d steps", trained.loss, parts, trained.steps)
    log.info("model exported to %s", trained.folder)


def _model(cfg: DictConfig):
    """The model folder of `model=`, or a shipped model by name (e.g. crysbfn-perov5)."""
    from polydiff.crystal.workflow import load_model, shipped_models

    name = str(cfg.model) if cfg.model is not None else ""
    where = name if name in shipped_models() else _path(cfg.model, "model")
    return load_model(where, device=cfg.device)


def _sampled(cfg: DictConfig, out: Path, **what: Any) -> Sampled:
    """Samples of ``what`` (n= or compositions=, and CrysBFN's sampling options) written to
    ``out``, with the validity printed."""
    from polydiff.crystal.workflow import sample_structures

    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    model = _model(cfg)
    sampled = sample_structures(model, out, seed=cfg.seed, batch_size=cfg.batch_size, **what)
    n, valid = len(sampled.crystals), sum(sampled.valid)
    log.info("%d structures in %.2f s -> %s (CIFs + structures.csv)", n, sampled.seconds, out)
    log.info("structural validity %.1f %% (%d of %d)", 100 * sampled.validity, valid, n)
    return sampled


@verb("generate", positional="model")
def generate(cfg: DictConfig, run_dir: Path) -> None:
    """Generate n crystals ab initio with a model trained with task=gen: CIFs and a CSV.

    Writes <run>/structures/crystal_<i>_<formula>.cif and structures.csv (or output=) and prints
    the structural validity (atoms >= 0.5 Å apart, volume >= 0.1 Å^3).
    """
    if not isinstance(cfg.n, int) or cfg.n < 1:
        raise ConfigError(f"n must be a positive integer, got {cfg.n!r}")
    _sampled(cfg, _output(cfg, run_dir, "structures"), n=cfg.n, **_sampling_options(cfg))


def _sampling_options(cfg: DictConfig) -> dict[str, Any]:
    """CrysBFN's sampler= (null: the model's default) as a library option."""
    return {} if cfg.sampler is None else {"sampler": str(cfg.sampler)}


@verb("predict", positional="model")
def predict(cfg: DictConfig, run_dir: Path) -> None:
    """Predict structures of compositions (CSP) with a model trained with task=csp: CIFs + CSV.

    Compositions from `formulas=[SrTiO3,Li2O]` or from the structures of `compositions=` (a CSV
    with a cif column or a CIF folder; limit= its first ones), one structure each, in order.
    """
    formulas = list(cfg.formulas or [])
    if bool(formulas) == (cfg.compositions is not None):
        raise ConfigError("give either formulas=[...] or compositions=<CSV or CIF folder>")
    compositions = formulas or _read(cfg, cfg.compositions, "compositions", niggli=False)
    options = _sampling_options(cfg)
    if cfg.candidates != 1:
        options["candidates"] = cfg.candidates
    _sampled(cfg, _output(cfg, run_dir, "structures"), compositions=compositions, **options)


@verb("evaluate", positional="structures")
def evaluate(cfg: DictConfig, run_dir: Path) -> None:
    """Structural validity and, against reference=, the CSP match rate / RMSE: metrics.json.

    structures= and reference= are CSVs (a cif column) or CIF folders; the reference holds the
    true structure of each prediction in the same order (as `predict compositions=<it>` writes
    them). The match rate (StructureMatcher stol=0.5, angle_tol=10, ltol=0.3) is printed beside
    that of the random-coordinate baseline (the reference with random fractional coordinates).
    """
    from polydiff.crystal.workflow import evaluate as score

    samples = _read(cfg, cfg.structures, "structures", niggli=False, check_geometry=False)
    reference = None
    if cfg.reference is not None:
        reference = _read(cfg, cfg.reference, "reference", niggli=False)
    metrics = score(samples, reference, seed=cfg.seed, output=run_dir / "metrics.json")
    log.info("structural validity %.1f %% of %d", 100 * metrics["validity"], metrics["n"])
    log.info("compositional validity (SMACT) %.1f %%", 100 * metrics["compositional_validity"])
    if reference is not None:
        log.info(_match_line(metrics))
        if metrics["match_rate"] < metrics["baseline_match_rate"]:
            log.warning(
                "the match rate is below the random-coordinate baseline's: these structures "
                "place atoms worse than random positions in the true lattice (an under-trained "
                "model? docs/crystal.md)"
            )


def _match_line(m: dict[str, Any]) -> str:
    return (
        f"match rate {100 * m['match_rate']:.1f} % (RMSE {m['rmse']:.3f}); random-coordinate "
        f"baseline {100 * m['baseline_match_rate']:.1f} % (RMSE {m['baseline_rmse']:.3f})"
    )


@demo_stage(
    quick=("data.n_synthetic=16", "train.steps=20", "n=4", "model.hidden=32", "model.layers=1")
)
@verb("demo")
def demo(cfg: DictConfig, run_dir: Path) -> StageResult:
    """Train tiny CrysBFN models (gen and CSP) on synthetic crystals, generate and predict.

    Trains one generation and one CSP model on the first crystals of data.source, generates n
    crystals, predicts the structures of the n held-out ones and scores them (structural
    validity; match rate / RMSE beside the random-coordinate baseline). Writes metrics.json and
    the CIFs under gen/ and csp/.
    """
    from polydiff.core.io import atomic_write_json, nan_to_none
    from polydiff.crystal.workflow import evaluate as score
    from polydiff.crystal.workflow import sample_structures

    if not isinstance(cfg.n, int) or cfg.n < 1:
        raise ConfigError(f"n must be a positive integer, got {cfg.n!r}")
    _recipe(cfg)
    every = _training_set(cfg)
    if len(every) <= cfg.n:
        raise ConfigError(f"data: {len(every)} crystals, need more than n={cfg.n} (held out)")
    crystals, held_out = every[: len(every) - cfg.n], every[len(every) - cfg.n :]
    metrics: dict[str, Any] = {}
    for task in ("gen", "csp"):
        trained = _train(cfg, run_dir / task, crystals, task)
        metrics[task] = {"train_loss": trained.loss, "steps": trained.steps}
        what = {"n": cfg.n} if task == "gen" else {"compositions": held_out}
        out = sample_structures(
            trained.method, run_dir / task / "structures", seed=cfg.seed, **what
        )
        metrics[task] |= {"validity": out.validity, "seconds": out.seconds}
        if task == "csp":
            scores = score(out.crystals, held_out, seed=cfg.seed)
            metrics[task] |= {k: v for k, v in scores.items() if k != "valid"}
        metrics[task]["formulas"] = out.crystals.formulas()
        metrics[task]["valid"] = out.valid
    atomic_write_json(run_dir / "metrics.json", nan_to_none(metrics))
    gen, csp = metrics["gen"], metrics["csp"]
    summary = (
        f"CrysBFN (N = {cfg.model.steps or 10} steps), {cfg.train.steps} training steps per "
        f"task on {len(crystals)} crystals of {cfg.data.source} (CPU-sized: a smoke run, not a "
        f"benchmark). Generation: structural validity {100 * gen['validity']:.0f} %. "
        f"CSP on the {cfg.n} held-out crystals: {_match_line(csp)}."
    )
    sections = [
        _formula_table("generated", gen),
        _formula_table("predicted (held-out compositions)", csp),
    ]
    headline = {
        "gen validity": round(gen["validity"], 3),
        "CSP match": round(csp["match_rate"], 3),
        "random-coord match": round(csp["baseline_match_rate"], 3),
    }
    return StageResult(headline, "\n\n".join([summary, *sections]), [], metrics)


def _formula_table(title: str, metrics: dict[str, Any]) -> str:
    rows = [f"| {title} | structurally valid |", "|---|---|"]
    for formula, ok in zip(metrics["formulas"], metrics["valid"]):
        rows.append(f"| {formula} | {'yes' if ok else 'no'} |")
    return "\n".join(rows)
