"""Train any text method on packed token sequences with the core's Lightning scaffold.

``train_method(method, corpus["train"], "runs/mdlm", max_steps=2000)`` wraps the method's
``loss_fn`` in :class:`polydiff.core.train.DiffusionModule` (AdamW, warmup, clipping, EMA),
trains with :func:`polydiff.core.train.fit` (atomic checkpoints, automatic resume: rerunning the
same call continues a killed run) and exports the EMA weights with the tokenizer into
``run_dir/export`` (loadable with :func:`polydiff.text.method.load_method`);
:func:`train_and_score` also scores the result on held-out rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from polydiff.text.method import TextMethod
from polydiff.text.metrics import unigram_perplexity

__all__ = ["EXPORT_DIR", "train_and_score", "train_method"]

EXPORT_DIR = "export"


def train_method(
    method: TextMethod,
    train: Tensor,
    run_dir: str | Path,
    *,
    max_steps: int,
    batch_size: int = 32,
    lr: float = 3e-4,
    warmup_steps: int = 100,
    ema_decay: float | None = 0.999,
    ema_warmup: bool = False,
    validation: Tensor | None = None,
    checkpoint_every: int = 500,
    seed: int = 0,
    progress_bar: bool = True,
    **fit_kwargs: Any,
):
    """Train ``method.net`` on token rows ``train [N, L]``; returns the trained
    DiffusionModule (its ``eval_net`` holds the EMA weights, also copied into ``method.net``).

    MDLM's recipe is lr 3e-4 with EMA 0.9999 on long runs; on CPU-scale runs of a few thousand
    steps EMA 0.999 tracks the weights closely enough.
    """
    from polydiff.core.train import DiffusionModule, ResumableLoader, fit

    if train.dim() != 2 or train.shape[0] < batch_size:
        raise ValueError(
            f"train must be token rows [N, L] with N >= batch_size={batch_size}, "
            f"got {tuple(train.shape)}"
        )
    module = DiffusionModule(
        method.net, method.loss_fn, lr=lr, warmup_steps=warmup_steps, ema_decay=ema_decay,
        ema_warmup=ema_warmup,
    )  # fmt: skip
    loader = ResumableLoader(TensorDataset(train), batch_size=batch_size, seed=seed)
    val_loader = None
    if validation is not None:
        val_loader = DataLoader(TensorDataset(validation), batch_size=batch_size)
    fit(
        module, loader, run_dir, max_steps=max_steps, val_loader=val_loader,
        checkpoint_every=checkpoint_every, seed=seed, progress_bar=progress_bar, **fit_kwargs,
    )  # fmt: skip
    if module.ema_net is not None:
        method.net.load_state_dict(module.ema_net.state_dict())
    method.net.eval()
    method.save(Path(run_dir) / EXPORT_DIR, module)
    return module


def train_and_score(
    method: TextMethod,
    train: Tensor,
    validation: Tensor,
    run_dir: str | Path,
    *,
    max_steps: int,
    batch_size: int = 32,
    **kwargs: Any,
) -> dict[str, Any] | None:
    """:func:`train_method`, then the exported model's perplexity on the ``validation`` rows
    (exact or a bound, by model: :meth:`~polydiff.text.method.TextMethod.held_out_perplexity`;
    time draws from torch's global generator). Returns what a run records (method, steps,
    parameters, validation rows, export folder, ``validation_ppl`` or
    ``validation_ppl_bound`` and its ``_se``, and ``validation_unigram_ppl``: the perplexity of
    the training text's unigram model, the baseline to beat), or None on a process other than
    rank 0 of a distributed run."""
    module = train_method(
        method, train, run_dir, max_steps=max_steps, batch_size=batch_size, **kwargs
    )
    if module.global_rank != 0:  # under DDP only rank 0 evaluates
        return None
    scores = method.held_out_perplexity(validation.split(batch_size))
    tok = method.tokenizer
    baseline = unigram_perplexity(train, validation, tok.vocab_size, (tok.pad_id, tok.mask_id))
    return {
        "method": method.name,
        "steps": max_steps,
        "parameters": sum(p.numel() for p in method.net.parameters()),
        "validation_rows": validation.shape[0],
        "checkpoint": str(Path(run_dir) / EXPORT_DIR),
        **{f"validation_{k}": v for k, v in scores.items()},
        "validation_unigram_ppl": baseline,
    }
