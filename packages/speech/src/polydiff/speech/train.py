"""Training SGMSE+ / StoRM on a paired corpus through `polydiff.core.train`, and export.

    method = SGMSE(SGMSEConfig(net=nets.PRESETS["small"]))
    train(method, "/data/voicebank", "runs/sgmse", max_steps=100_000, batch_size=8)
    method = load_model("runs/sgmse/model")   # polydiff.speech.methods: EMA weights, JSON config

The recipe is the papers' (Richter et al. 2023, Sec. IV-B; Lemercier et al. 2023, Sec. IV-C):
Adam, learning rate 1e-4, EMA decay 0.999, batch 8, random 256-frame crops normalised by
max|noisy|. Everything else (checkpoints, resume, logging, multi-GPU) is the core's `fit`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from polydiff.core.train import DiffusionModule, ResumableLoader, fit
from polydiff.speech.audio import load_audio
from polydiff.speech.data import PairedSpeech, list_pairs
from polydiff.speech.method import SpeechMethod
from polydiff.speech.metrics import evaluate_pair


def finite_means(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean PESQ / ESTOI / SI-SDR over per-file rows, NaN values left out (NaN if none)."""
    means = {}
    for key in ("pesq", "estoi", "si_sdr"):
        values = [r[key] for r in rows if math.isfinite(r[key])]
        means[key] = float(np.mean(values)) if values else math.nan
    return means


class EnhanceValidation(L.Callback):
    """SGMSE's validation (Richter et al. 2023, Sec. IV-B): every ``every_n_steps`` optimizer
    steps, enhance the first ``num_files`` pairs of ``subset`` (whole files, seeded) with the
    evaluated (EMA) network and log the means of ``val/pesq``, ``val/estoi``, ``val/si_sdr``.
    Monitor one of them with a Lightning ``ModelCheckpoint`` to keep the best checkpoint. The
    training RNG streams are untouched (enhancement draws from its own seeded generator).
    """

    def __init__(
        self,
        data_root: str | os.PathLike,
        *,
        subset: str = "valid",
        num_files: int = 20,
        every_n_steps: int = 5000,
        seed: int = 0,
        **sampler_kwargs: Any,
    ) -> None:
        if num_files < 1 or every_n_steps < 1:
            raise ValueError(
                f"EnhanceValidation: need num_files >= 1 and every_n_steps >= 1, got "
                f"{num_files}, {every_n_steps}"
            )
        self.pairs = list_pairs(data_root, subset)[:num_files]
        self.every, self.seed, self.sampler_kwargs = every_n_steps, seed, sampler_kwargs

    def evaluate(self, model: SpeechMethod) -> dict[str, float]:
        """Mean PESQ / ESTOI / SI-SDR of the enhanced files (NaN metrics left out)."""
        sr = model.spec.sample_rate
        rows = []
        for pair in self.pairs:
            clean, _ = load_audio(pair.clean, sr, allow_silence=True)
            noisy, _ = load_audio(pair.noisy, sr)
            estimate = model.enhance(noisy, sr, seed=self.seed, **self.sampler_kwargs)
            rows.append(evaluate_pair(clean, estimate, sr))
        return finite_means(rows)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        step = trainer.global_step
        if step % self.every or trainer.global_rank != 0:
            return
        method = pl_module.method  # set by `training_module`
        means = self.evaluate(type(method)(method.config, pl_module.eval_net))
        pl_module.log_dict({f"val/{k}": v for k, v in means.items()}, rank_zero_only=True)


class ExportEvery(L.Callback):
    """Export the evaluated (EMA) weights every ``every_n_steps`` optimizer steps to
    ``folder``/step_<step>, each a loadable model, so a run's checkpoints can be compared by
    their enhancement metrics on validation clips afterwards (`benchmarks/speech_valid16k.py`)
    rather than picked by the training loss."""

    def __init__(self, folder: str | os.PathLike, every_n_steps: int) -> None:
        if every_n_steps < 1:
            raise ValueError(f"ExportEvery: every_n_steps must be >= 1, got {every_n_steps}")
        self.folder, self.every = Path(folder), every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        step = trainer.global_step
        if step % self.every or trainer.global_rank != 0:
            return
        pl_module.method.save(self.folder / f"step_{step:05d}", pl_module)


def training_module(
    method: SpeechMethod, *, lr: float = 1e-4, ema_decay: float | None = 0.999, **kwargs: Any
) -> DiffusionModule:
    """A `DiffusionModule` training ``method.net`` on ``method.loss_fn`` with the papers'
    optimizer (Adam 1e-4, EMA 0.999, no clipping); ``kwargs`` override any `DiffusionModule`
    argument (warmup_steps, ema_warmup, ...). ``module.method`` is ``method``."""
    options = {"optimizer": "adam", "grad_clip_norm": None, **kwargs}
    module = DiffusionModule(method.net, method.loss_fn, lr=lr, ema_decay=ema_decay, **options)
    module.method = method
    return module


def train(
    method: SpeechMethod,
    data_root: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    max_steps: int,
    batch_size: int = 8,
    num_frames: int = 256,
    normalize: str = "noisy",
    lr: float = 1e-4,
    ema_decay: float | None = 0.999,
    seed: int = 0,
    num_workers: int = 0,
    validate: bool = True,
    checkpoint_every: int = 1000,
    enhance_every: int | None = None,
    enhance_files: int = 20,
    export_every: int | None = None,
    module_kwargs: dict | None = None,
    export_to: str | os.PathLike | None = None,
    **fit_kwargs: Any,
) -> DiffusionModule:
    """Train on ``data_root/{train,valid}/{clean,noisy}`` and save the method (EMA weights) to
    ``export_to`` (default ``run_dir/model``; under DDP rank 0 alone writes it).

    Running the same call again resumes from ``run_dir/checkpoints/last.ckpt``. With
    ``validate`` and a ``valid/`` subset, the validation loss (EMA weights, centre crops) is
    logged every ``checkpoint_every`` steps (override with ``val_every=``); with
    ``enhance_every``, `EnhanceValidation` also enhances ``enhance_files`` valid files that
    often and logs val/pesq, val/estoi, val/si_sdr; with ``export_every``, `ExportEvery`
    writes the EMA weights that often to ``run_dir/exports/step_<step>``. ``normalize`` is
    `PairedSpeech`'s crop normalisation ("noisy_file": the whole file's peak, as enhancement).
    ``fit_kwargs`` go to
    `polydiff.core.train.fit` (accelerator, devices, precision, log_every, callbacks, ...).
    """
    spec = method.spec
    train_set = PairedSpeech(data_root, "train", spec, num_frames=num_frames, normalize=normalize)
    loader = ResumableLoader(train_set, batch_size, seed=seed, num_workers=num_workers)
    val_loader = None
    if validate and (Path(data_root) / "valid").is_dir():
        val_set = PairedSpeech(
            data_root, "valid", spec, num_frames=num_frames, crop="center", normalize=normalize
        )
        val_loader = ResumableLoader(val_set, batch_size, shuffle=False, drop_last=False)
    module = training_module(method, lr=lr, ema_decay=ema_decay, **(module_kwargs or {}))
    callbacks = list(fit_kwargs.pop("callbacks", ()))
    if enhance_every is not None:
        callbacks.append(
            EnhanceValidation(data_root, num_files=enhance_files, every_n_steps=enhance_every)
        )
    if export_every is not None:
        callbacks.append(ExportEvery(Path(run_dir) / "exports", export_every))
    fit(
        module,
        loader,
        run_dir,
        max_steps=max_steps,
        val_loader=val_loader,
        checkpoint_every=checkpoint_every,
        seed=seed,
        callbacks=callbacks,
        **fit_kwargs,
    )
    if module.global_rank == 0:
        method.save(Path(run_dir) / "model" if export_to is None else export_to, module)
    return module


def validation_report(
    model: SpeechMethod,
    data_root: str | os.PathLike,
    *,
    subset: str = "valid",
    num_files: int = 4,
    seed: int = 0,
    **sampler_kwargs: Any,
) -> dict[str, Any]:
    """How a trained model does against doing nothing: the mean PESQ / ESTOI / SI-SDR of the
    noisy input and of the enhanced files over the first ``num_files`` pairs of ``subset``
    (:class:`EnhanceValidation`), and ``worse``: the metrics on which enhancing lost."""
    check = EnhanceValidation(data_root, subset=subset, num_files=num_files, seed=seed,
                              **sampler_kwargs)  # fmt: skip
    if not check.pairs:
        raise ValueError(f"{data_root}: no {subset}/ pairs to validate on")
    sr = model.spec.sample_rate
    rows = []
    for pair in check.pairs:
        clean, _ = load_audio(pair.clean, sr, allow_silence=True)
        noisy, _ = load_audio(pair.noisy, sr)
        rows.append(evaluate_pair(clean, noisy, sr))
    noisy_means = finite_means(rows)
    enhanced = check.evaluate(model)
    worse = [k for k in noisy_means if not enhanced[k] > noisy_means[k]]
    return {"files": len(check.pairs), "noisy": noisy_means, "enhanced": enhanced,
            "worse": worse}  # fmt: skip


def training_summary(module: DiffusionModule) -> dict[str, Any]:
    """Steps, parameter count and last training loss of a finished `train` run."""
    loss = module.trainer.callback_metrics.get("train/loss")
    return {
        "method": module.method.name,
        "steps": int(module.global_step),
        "parameters": sum(p.numel() for p in module.net.parameters()),
        "train_loss": None if loss is None else float(loss),
    }


__all__ = [
    "EnhanceValidation",
    "ExportEvery",
    "train",
    "training_module",
    "training_summary",
    "validation_report",
]
