"""The crystal workflows behind ``polydiff crystal train|generate|predict|evaluate``, one call each:
read a training set from wherever it is, train (resumably) and export a model, sample structures
into CIF files and a CSV, and score structures (structural validity, CSP match rate / RMSE beside
the random-coordinate baseline). Every refused input is an :class:`InputError` naming the file,
structure or option, raised before anything is written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polydiff.core.errors import InputError, check_number
from polydiff.core.io import atomic_write_json
from polydiff.core.method import Method, load_method, read_method_config
from polydiff.crystal.crysbfn import (
    CrysBFN,
    CrysBFNConfig,
    check_positive_int,
    check_positive_ints,
    config_for,
)
from polydiff.crystal.data import (
    Crystals,
    read_cif_folder,
    read_csv,
    synthetic,
    to_graphs,
    write_cifs,
    write_csv,
)
from polydiff.crystal.diffcsp import DiffCSP, DiffCSPConfig
from polydiff.crystal.metrics import (
    compositional_validity,
    csp_match,
    random_coordinates,
    structural_validity,
)

__all__ = [
    "METHODS",
    "Sampled",
    "TrainRecipe",
    "Trained",
    "check_output",
    "dataset_loss",
    "evaluate",
    "load_model",
    "read_structures",
    "sample_structures",
    "shipped_models",
    "train",
]

SHIPPED = Path(__file__).parent / "checkpoints"
METHODS = {"crysbfn": (CrysBFN, CrysBFNConfig), "diffcsp": (DiffCSP, DiffCSPConfig)}
SYNTHETIC = "synthetic"


def read_structures(
    source: str | Path,
    *,
    limit: int | None = None,
    n_synthetic: int = 64,
    seed: int = 0,
    **checks: Any,
) -> Crystals:
    """Crystals from a CDVAE/DiffCSP CSV (a ``cif`` column), a folder of ``*.cif`` files, or
    ``"synthetic"`` (``n_synthetic`` pyxtal crystals, seeded); ``limit``: the first ones only;
    ``checks``: options of :func:`polydiff.crystal.data.read_crystals`."""
    if limit is not None:
        check_positive_int("limit", limit)
    if str(source) == SYNTHETIC:
        check_positive_int("n_synthetic", n_synthetic)
        max_atoms = checks.get("max_atoms") or 8
        crystals = synthetic(n_synthetic, seed=seed, max_atoms=max_atoms)
        return crystals if limit is None else crystals[:limit]
    path = Path(source)
    if path.is_dir():
        return read_cif_folder(path, **checks)[: limit or None]
    if path.is_file():
        return read_csv(path, limit=limit, **checks)
    raise InputError(f"{source}: no such file or folder (a CSV, a CIF folder or {SYNTHETIC!r})")


def check_output(folder: str | Path, option: str = "output") -> Path:
    """``folder`` as an output folder: refused (naming ``option``) where it or a folder above it
    is a regular file, so that a run fails before it writes anything."""
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise InputError(f"{option}={folder}: {part} is a regular file, not a folder")
    return folder


@dataclass(frozen=True)
class TrainRecipe:
    """Optimisation settings: ``steps`` optimizer steps (in total, counting resumed ones),
    ``batch_size`` crystals per step, AdamW ``lr``, ``ema`` decay of the exported weights,
    reached by ``ema_warmup`` (decay min(ema, (1 + n) / (10 + n)) at update n) so that a short
    run's export does not keep a share of the initial weights (0.995^200 = 37 %)."""

    steps: int = 200
    batch_size: int = 16
    lr: float = 1e-3
    ema: float = 0.995
    checkpoint_every: int = 100
    seed: int = 0
    ema_warmup: bool = True

    def __post_init__(self) -> None:
        check_positive_ints(self, ("steps", "batch_size", "checkpoint_every"))
        check_number("lr", self.lr, positive=True)
        check_number("ema", self.ema, minimum=0)
        if not self.ema < 1:
            raise InputError(f"ema must be < 1, got {self.ema}")
        if not isinstance(self.ema_warmup, bool):
            raise InputError(f"ema_warmup must be true or false, got {self.ema_warmup!r}")


@dataclass
class Trained:
    method: Method  # the exported model, reloaded (EMA weights, eval mode)
    folder: Path  # where it was exported
    loss: float  # its mean training loss over the training set (seeded)
    parts: dict[str, float] = field(default_factory=dict)  # the loss's terms
    steps: int = 0  # optimizer steps done in total


def build_method(crystals: Crystals, method: str = "crysbfn", **options: Any) -> Method:
    """A fresh ``method`` ("crysbfn" | "diffcsp") fitted to a training set; ``options`` set
    config fields (None: the default). DiffCSP predicts structures only (task "csp")."""
    if method not in METHODS:
        raise InputError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    cls, config_class = METHODS[method]
    options = {k: v for k, v in options.items() if v is not None}
    if cls is DiffCSP and options.pop("task", "csp") != "csp":
        raise InputError("task: diffcsp predicts structures (task csp) only; use crysbfn for gen")
    try:
        return cls(config_for(crystals, config_class, **options))
    except TypeError as err:  # an unknown config field
        raise InputError(f"{method}: {err}") from None


def dataset_loss(
    method: Method, crystals: Crystals, *, seed: int = 0, batch_size: int = 64
) -> dict[str, float]:
    """The method's training loss averaged over ``crystals`` (its random steps seeded), per
    term, weighted by crystals per batch."""
    from polydiff.crystal.data import to_batch

    totals: dict[str, float] = {}
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, len(crystals), batch_size):
            part = crystals[start : start + batch_size]
            batch = to_batch(part, method.vocab).to(method.device)
            out = method.loss_fn(method.net, batch)
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(part)
    return {key: value / len(crystals) for key, value in totals.items()}


def train(
    crystals: Crystals,
    run_dir: str | Path,
    *,
    method: str = "crysbfn",
    options: dict[str, Any] | None = None,
    recipe: TrainRecipe | None = None,
    export_to: str | Path | None = None,
    **fit_kwargs: Any,
) -> Trained:
    """Train ``method`` on ``crystals`` in ``run_dir`` through the core trainer, resuming from
    ``run_dir/checkpoints/last.ckpt`` when it exists; export the EMA weights (safetensors +
    config.json) to ``export_to`` (default ``run_dir/model``) and score them on the training
    set. ``fit_kwargs`` go to :func:`polydiff.core.train.fit` (placement, progress bar)."""
    from torch_geometric.data import Batch

    from polydiff.core.train import DiffusionModule, ResumableLoader, fit

    recipe = recipe or TrainRecipe()
    export_to = check_output(Path(run_dir) / "model" if export_to is None else export_to, "export")
    model = build_method(crystals, method, **(options or {}))
    graphs = to_graphs(crystals, model.vocab)
    loader = ResumableLoader(
        graphs,
        recipe.batch_size,
        seed=recipe.seed,
        drop_last=False,
        collate_fn=Batch.from_data_list,
    )
    module = DiffusionModule(
        model.net, model.loss_fn, lr=recipe.lr, ema_decay=recipe.ema, ema_warmup=recipe.ema_warmup
    )
    fit_kwargs.setdefault("seed", recipe.seed)
    trainer = fit(
        module,
        loader,
        run_dir,
        max_steps=recipe.steps,
        checkpoint_every=recipe.checkpoint_every,
        **fit_kwargs,
    )
    model.save(export_to, module)
    exported = load_model(export_to)
    losses = dataset_loss(exported, crystals, seed=recipe.seed)
    loss = losses.pop("loss")
    return Trained(exported, export_to, loss, losses, int(trainer.global_step))


def shipped_models() -> list[str]:
    """Names of the models shipped with polydiff-crystal (``checkpoints/<name>/``, each with a
    README saying how it was trained and what it scores)."""
    return sorted(p.parent.name for p in SHIPPED.glob("*/config.json"))


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> Method:
    """A crystal model exported by :func:`train`, or a shipped one by name (see
    :func:`shipped_models`, e.g. ``"crysbfn-perov5"``); InputError naming the folder
    otherwise."""
    folder = Path(folder)
    if not folder.is_dir() and str(folder) in shipped_models():
        folder = SHIPPED / str(folder)
    if not folder.is_dir():
        known = ", ".join(shipped_models()) or "none"
        raise InputError(f"{folder}: no such model folder (nor a shipped model: {known})")
    try:
        read_method_config(folder, domain="crystal")
        return load_method(folder, device=device)
    except InputError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise InputError(f"{folder}: not a crystal model ({err})") from None


@dataclass
class Sampled:
    crystals: Crystals
    valid: list[bool]  # structural validity per crystal
    cifs: list[Path]
    csv: Path
    seconds: float  # sampling time (network calls), without writing

    @property
    def validity(self) -> float:
        return sum(self.valid) / len(self.valid)


def sample_structures(
    model: Method,
    folder: str | Path,
    *,
    n: int | None = None,
    compositions: Sequence[str] | Crystals | None = None,
    seed: int = 0,
    batch_size: int = 64,
    **options: Any,
) -> Sampled:
    """Predict one structure per composition (CSP) or generate ``n`` (ab initio), then write
    them to ``folder`` as CIF files and ``structures.csv`` (CDVAE format) with their structural
    validity. ``options``: CrysBFN's sampling options (``sampler``, ``candidates`` for CSP).
    Inputs are all checked before the folder is created."""
    folder = check_output(folder)
    if options and not isinstance(model, CrysBFN):
        raise InputError(f"{', '.join(options)}: options of CrysBFN, not of {model.name}")
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    if compositions is not None:
        crystals = model.predict(
            compositions, generator=generator, batch_size=batch_size, **options
        )
    else:
        if not isinstance(model, CrysBFN):
            raise InputError(f"generate: {model.name} predicts structures only (no generate)")
        crystals = model.generate(n, generator=generator, batch_size=batch_size, **options)
    seconds = time.perf_counter() - start
    valid = structural_validity(crystals)
    cifs = write_cifs(crystals, folder)
    return Sampled(crystals, valid, cifs, write_csv(crystals, folder / "structures.csv"), seconds)


def evaluate(
    structures: Crystals,
    reference: Crystals | None = None,
    *,
    seed: int = 0,
    output: str | Path | None = None,
) -> dict[str, Any]:
    """Structural and SMACT compositional validity of ``structures`` and, against
    ``reference`` (the true structures,
    one per prediction, same order and compositions), the CSP match rate and RMSE
    (StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)) beside those of the random-coordinate
    baseline (seeded). Written to ``output`` (a JSON file) when given."""
    if output is not None:
        check_output(Path(output).parent, "output")
    valid = structural_validity(structures)
    composition = compositional_validity(structures)
    metrics: dict[str, Any] = {
        "n": len(structures),
        "validity": sum(valid) / len(valid),
        "compositional_validity": sum(composition) / len(composition),
    }
    if reference is not None:
        if len(reference) != len(structures):
            raise InputError(
                f"reference: {len(reference)} structures for {len(structures)} predictions "
                "(one per prediction, in the same order)"
            )
        pairs = zip(structures.names, structures.formulas(), reference.formulas())
        for name, ours, theirs in pairs:
            if ours != theirs:
                raise InputError(f"{name}: composition {ours} differs from the reference {theirs}")
        score = csp_match(structures, reference)
        generator = torch.Generator().manual_seed(seed)
        base = csp_match(random_coordinates(reference, generator), reference)
        metrics |= {
            "match_rate": score.match_rate,
            "rmse": score.rmse,
            "baseline_match_rate": base.match_rate,
            "baseline_rmse": base.rmse,
        }
    metrics["valid"] = valid
    if output is not None:
        from polydiff.core.io import nan_to_none

        atomic_write_json(output, nan_to_none(metrics))
    return metrics
