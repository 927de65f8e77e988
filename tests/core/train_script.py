"""Tiny training run used by test_train_resume.py and test_ddp.py (run as a script, not by pytest).

Trains a flow-matching MLP on a fixed 2-D point cloud with `polydiff.core.train.fit`, then each
rank writes its final weights to `<run_dir>/final/rank<r>.safetensors` and a JSON summary.

`--kill-in-save-at-step K` SIGKILLs the process in the middle of writing the checkpoint of step K
(once: a marker file makes the same command run through the second time).
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import TensorDataset

from polydiff.core.io import atomic_save_safetensors, atomic_write_json
from polydiff.core.train import DiffusionModule, ResumableLoader, fit


def flow_matching_loss(net: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rectified-flow loss: x_t = (1 - t) x0 + t eps, regress the velocity eps - x0."""
    (x0,) = batch
    t = torch.rand(x0.shape[0], 1, device=x0.device, dtype=x0.dtype)
    eps = torch.randn_like(x0)
    x_t = (1 - t) * x0 + t * eps
    v = net(torch.cat([x_t, t], dim=1))
    loss = (v - (eps - x0)).square().mean()
    return {"loss": loss, "t_mean": t.mean()}


class KillDuringSave(L.Callback):
    """Make the checkpoint write of step `step` die half-way (SIGKILL), once."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step, self.marker = step, marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step + 1 != self.step or self.marker.exists():
            return
        self.marker.write_text("killed")
        real_save = torch.save

        def dying_save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            data = Path(f).read_bytes()
            Path(f).write_bytes(data[: len(data) // 2])  # half-written file, then killed
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = dying_save


class Summary(L.Callback):
    """Record the first step of this launch, the data seen, and save final weights per rank."""

    def __init__(self) -> None:
        self.data_sum = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.data_sum += float(batch[0].sum())

    def on_train_end(self, trainer, pl_module) -> None:
        out = Path(trainer.default_root_dir) / "final"
        rank = trainer.global_rank
        atomic_save_safetensors(out / f"rank{rank}.safetensors", final_weights(pl_module))
        summary = {
            "start_step": self.start_step,
            "final_step": trainer.global_step,
            "data_sum": self.data_sum,
        }
        atomic_write_json(out / f"rank{rank}.json", summary)


def final_weights(module: DiffusionModule) -> dict[str, torch.Tensor]:
    tensors = {f"net.{k}": v for k, v in module.net.state_dict().items()}
    return tensors | {f"ema.{k}": v for k, v in module.ema_net.state_dict().items()}


def train(
    run_dir: Path,
    max_steps: int = 30,
    checkpoint_every: int = 10,
    devices: int = 1,
    strategy: str = "auto",
    callbacks: tuple[L.Callback, ...] = (),
) -> DiffusionModule:
    """The run every launch of this script does (also called in-process by the tests)."""
    L.seed_everything(0, verbose=False)
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(1)) * 0.5 + 1.0
    loader = ResumableLoader(TensorDataset(data), batch_size=8, seed=3)
    net = nn.Sequential(nn.Linear(3, 32), nn.SiLU(), nn.Linear(32, 2))
    module = DiffusionModule(net, flow_matching_loss, lr=1e-2, warmup_steps=5, ema_decay=0.9)
    fit(
        module,
        loader,
        run_dir,
        max_steps=max_steps,
        checkpoint_every=checkpoint_every,
        log_every=5,
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        progress_bar=False,
        callbacks=callbacks,
        default_root_dir=run_dir,
    )
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--kill-in-save-at-step", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    callbacks: list[L.Callback] = [Summary()]
    if args.kill_in_save_at_step:
        marker = args.run_dir / "killed.marker"
        callbacks.append(KillDuringSave(args.kill_in_save_at_step, marker))
    train(
        args.run_dir,
        args.max_steps,
        args.checkpoint_every,
        args.devices,
        args.strategy,
        tuple(callbacks),
    )


if __name__ == "__main__":
    main()
