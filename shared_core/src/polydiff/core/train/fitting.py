"""`fit`: build a Lightning Trainer for a polydiff run folder and train, resuming automatically.

Run folder layout:
    run_dir/checkpoints/last.ckpt            the newest state (resume point)
    run_dir/checkpoints/step=00001000.ckpt   periodic checkpoints (the newest `keep_checkpoints`)
    run_dir/logs/version_k/metrics.csv       CSV metrics (one version per launch)
    run_dir/tensorboard/version_k/           TensorBoard events, when tensorboard is installed
"""

from __future__ import annotations

import csv
import importlib.util
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from torch.utils.data import DataLoader

from polydiff.core.errors import InputError
from polydiff.core.io import remove_stale_temps
from polydiff.core.train.checkpoint import AtomicCheckpointIO, is_complete_checkpoint

__all__ = [
    "LAST_CHECKPOINT",
    "StepCheckpoint",
    "StepProgressBar",
    "auto_precision",
    "fit",
    "logged_losses",
    "resume_point",
]

LAST_CHECKPOINT = "last.ckpt"


def resume_point(ckpt_dir: Path) -> Path | None:
    """The checkpoint to resume from: `last.ckpt`, or, when it is damaged (cut short), the newest
    complete `step=*.ckpt` beside it, with a warning that says so; None in a fresh folder.
    InputError when checkpoints exist but none is complete."""
    last = ckpt_dir / LAST_CHECKPOINT
    steps = sorted(ckpt_dir.glob("step=*.ckpt"), reverse=True)  # zero-padded: newest first
    candidates = [p for p in [last, *steps] if p.is_file()]
    for path in candidates:
        if is_complete_checkpoint(path):
            if path != last and last.is_file():
                warnings.warn(
                    f"{last}: damaged (cut short); resuming from {path.name}, the newest complete "
                    "checkpoint beside it",
                    stacklevel=2,
                )
            return path
    if candidates:
        names = ", ".join(p.name for p in candidates)
        raise InputError(
            f"{ckpt_dir}: no complete checkpoint to resume from ({names}: damaged); "
            "move the folder away to train from scratch"
        )
    return None


def auto_precision(accelerator: str = "auto") -> str:
    """Mixed precision only on a CUDA GPU ("bf16-mixed" if supported, else "16-mixed");
    "32-true" on CPU and anything else."""
    on_cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if not on_cuda:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


class StepProgressBar(ProgressBar):
    """Training progress as optimizer steps out of `max_steps` (a run is sized in steps, and
    Lightning's bar counts batches of the current epoch), with the latest logged loss; a resumed
    run starts at its checkpoint's step."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled, self._bar = True, None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(total=trainer.max_steps, initial=trainer.global_step, desc="train",
                         unit="step", dynamic_ncols=True)  # fmt: skip

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._bar is None:
            return
        self._bar.update(trainer.global_step - self._bar.n)
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None and trainer.global_step % trainer.log_every_n_steps == 0:
            # read at the logging interval only: float() waits for the device
            self._bar.set_postfix_str(f"loss {float(loss):.4g}", refresh=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class StepCheckpoint(ModelCheckpoint):
    """Checkpoint every N optimizer steps, keep the newest k, and always save at the end.

    Lightning's `ModelCheckpoint(every_n_train_steps=N)` does not save the final state when
    `max_steps` is not a multiple of N; a rerun would then redo the tail. Saving on train end
    makes the rerun of a finished command a no-op.
    """

    def __init__(self, dirpath: Path, every_n_steps: int, keep: int) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="step={step:08d}",
            auto_insert_metric_name=False,
            monitor="step",  # "best" = newest, so save_top_k keeps the k most recent
            mode="max",
            save_top_k=keep,
            every_n_train_steps=every_n_steps,
            save_last=True,
            enable_version_counter=False,
        )
        self._start_step = 0

    def _save_now(self, trainer: L.Trainer) -> None:
        if self._last_global_step_saved != trainer.global_step and not trainer.fast_dev_run:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        # The final step is saved from the same hook as the periodic ones: Lightning's restart
        # logic expects checkpoints taken at the end of a training batch.
        if 0 < trainer.max_steps <= trainer.global_step:
            self._save_now(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._start_step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        # Training stopped another way (max_epochs, a callback). A relaunch of a finished run
        # trains nothing and must not overwrite its batch-end checkpoint.
        if trainer.global_step > self._start_step:
            self._save_now(trainer)


def fit(
    module: L.LightningModule,
    train_loader: DataLoader,
    run_dir: str | Path,
    *,
    max_steps: int,
    val_loader: DataLoader | None = None,
    val_every: int | None = None,
    checkpoint_every: int = 1000,
    keep_checkpoints: int = 1,
    log_every: int = 50,
    precision: str | None = None,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    num_nodes: int = 1,
    strategy: str | Any = "auto",
    seed: int | None = None,
    resume: bool = True,
    progress_bar: bool = True,
    callbacks: Iterable[Callback] = (),
    loggers: Iterable[Logger] | None = None,
    **trainer_kwargs: Any,
) -> L.Trainer:
    """Train `module` for `max_steps` optimizer steps in `run_dir`, resuming if possible.

    If `run_dir/checkpoints/last.ckpt` exists and `resume` is true, training continues from it
    (model, EMA, optimizer, scheduler, step counters, data position, RNG state): running the same
    command again after a crash loses nothing but the steps since the last checkpoint, and
    running it after completion does nothing. Multi-GPU / multi-node runs use Lightning's own
    launchers: pass `devices`, `num_nodes`, `strategy="ddp"` (see docs/training.md).

    Args:
        module: usually a `DiffusionModule`.
        train_loader: training batches; a `ResumableLoader` resumes mid-epoch exactly.
        run_dir: run folder (created); checkpoints, logs and exports go below it.
        max_steps: total optimizer steps (including those done before a resume).
        val_loader: optional validation batches; validated every `val_every` steps (default:
            every `checkpoint_every` steps).
        checkpoint_every: write a checkpoint (and update `last.ckpt`) every this many steps.
        keep_checkpoints: how many periodic `step=*.ckpt` files to keep (-1: all).
        log_every: metrics logging interval in steps.
        precision: Lightning precision; default `auto_precision(accelerator)`.
        accelerator, devices, num_nodes, strategy: passed to `lightning.Trainer`.
        seed: if given, `lightning.seed_everything(seed)` before training (for fresh runs; a
            resumed run restores the RNG state of its checkpoint).
        resume: continue from `last.ckpt` when it exists.
        progress_bar: show the training progress (`StepProgressBar`: steps out of `max_steps`).
        callbacks: extra Lightning callbacks.
        loggers: replace the default CSV (+ TensorBoard) loggers.
        **trainer_kwargs: any other `lightning.Trainer` argument.

    Returns:
        The `lightning.Trainer` after `fit` (e.g. `trainer.global_step`).
    """
    if max_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {max_steps}")
    if checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be positive, got {checkpoint_every}")
    if keep_checkpoints == 0 or keep_checkpoints < -1:
        raise ValueError(f"keep_checkpoints must be >= 1 or -1 (all), got {keep_checkpoints}")
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run_dir {run_dir} exists and is not a directory")
    ckpt_dir = run_dir / "checkpoints"
    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=False)

    if loggers is None:
        loggers = [CSVLogger(run_dir, name="logs")]
        if importlib.util.find_spec("tensorboard") is not None:
            loggers.append(TensorBoardLogger(run_dir, name="tensorboard", default_hp_metric=False))
    loggers = list(loggers)
    val_interval = val_every or checkpoint_every
    trainer_kwargs.setdefault("default_root_dir", run_dir)
    trainer = L.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision or auto_precision(accelerator),
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            StepCheckpoint(ckpt_dir, checkpoint_every, keep_checkpoints),
            *([LearningRateMonitor(logging_interval="step")] if loggers else []),
            *([StepProgressBar()] if progress_bar else []),
            *callbacks,
        ],
        logger=loggers or False,
        log_every_n_steps=log_every,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        # Validation by optimizer step, counted across epochs.
        check_val_every_n_epoch=None,
        val_check_interval=val_interval,
        limit_val_batches=None if val_loader is not None else 0,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    ckpt_path = resume_point(ckpt_dir) if resume and ckpt_dir.is_dir() else None
    if trainer.is_global_zero:
        remove_stale_temps(ckpt_dir)  # left by a writer killed mid-write; last.ckpt is intact
    with warnings.catch_warnings():
        # Expected here, not actionable: no validation set given / resuming into a used folder.
        warnings.filterwarnings("ignore", message=r".*no `val_dataloader`")
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
        # Lightning 2.6 on torch 2.13: its own use of a deprecated torch pytree API
        warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
        trainer.fit(
            module,
            train_dataloaders=train_loader,
            val_dataloaders=val_loader,
            ckpt_path=ckpt_path,
            weights_only=True,
        )
    return trainer


def logged_losses(run_dir: str | Path) -> list[float]:
    """The training losses `fit` logged in ``run_dir`` (every launch, in step order; a resumed
    run's steps replace those the interrupted one logged after its checkpoint)."""
    by_step: dict[int, float] = {}
    versions = sorted(
        (Path(run_dir) / "logs").glob("version_*/metrics.csv"),
        key=lambda p: int(p.parent.name.split("_")[1]),
    )
    for csv_file in versions:
        with csv_file.open() as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    by_step[int(row["step"])] = float(row["train/loss"])
    return [by_step[k] for k in sorted(by_step)]
