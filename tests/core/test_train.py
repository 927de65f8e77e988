"""polydiff.core.train: EMA, DiffusionModule, ResumableLoader, fit (in-process), export/load."""

from __future__ import annotations

import csv
import pickle
import re

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_write_text, load_safetensors, safetensors_metadata
from polydiff.core.train import (
    AtomicCheckpointIO,
    DiffusionModule,
    ResumableLoader,
    auto_precision,
    checkpoint_state_dict,
    ema_decay_at,
    export,
    export_checkpoint,
    fit,
    get_rng_state,
    load_checkpoint,
    load_config,
    load_weights,
    logged_losses,
    make_ema,
    set_rng_state,
    update_ema,
)
from polydiff.core.train import data as train_data
from polydiff.core.train.module import _split_loss


def denoising_loss(net: nn.Module, batch) -> dict[str, torch.Tensor]:
    """x_t = (1 - t) x0 + t eps; regress the velocity eps - x0 (rectified flow)."""
    (x0,) = batch
    t = torch.rand(x0.shape[0], 1)
    eps = torch.randn_like(x0)
    v = net(torch.cat([(1 - t) * x0 + t * eps, t], dim=1))
    return {"loss": (v - (eps - x0)).square().mean(), "t_mean": t.mean()}


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 16), nn.SiLU(), nn.Linear(16, 2))


def tiny_run(
    run_dir,
    max_steps,
    *,
    checkpoint_every=5,
    keep=1,
    callbacks=(),
    val=False,
    progress_bar=False,
    **module_kw,
):
    """A seeded fit of a 2-D flow-matching MLP; 4 batches per epoch."""
    with torch.random.fork_rng(devices=[]):
        L.seed_everything(0, verbose=False)
        data = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
        loader = ResumableLoader(TensorDataset(data), batch_size=8, seed=5)
        kw = {"lr": 1e-2, "warmup_steps": 3, "ema_decay": 0.8} | module_kw
        module = DiffusionModule(tiny_net(), denoising_loss, **kw)
        val_loader = DataLoader(TensorDataset(data[:16]), batch_size=8) if val else None
        trainer = fit(
            module,
            loader,
            run_dir,
            max_steps=max_steps,
            val_loader=val_loader,
            checkpoint_every=checkpoint_every,
            keep_checkpoints=keep,
            log_every=1,
            accelerator="cpu",
            devices=1,
            progress_bar=progress_bar,
            callbacks=list(callbacks),
        )
    return module, trainer


# --- EMA -------------------------------------------------------------------------------------


def test_update_ema_matches_closed_form_and_copies_buffers():
    net = nn.BatchNorm1d(3)
    ema = make_ema(net)
    assert all(not p.requires_grad for p in ema.parameters())
    e0 = torch.tensor([1.0, -2.0, 0.5])
    with torch.no_grad():
        ema.weight.copy_(e0)
        net.weight.fill_(3.0)
        net.running_mean.fill_(7.0)
    decay, n = 0.9, 5
    for _ in range(n):
        update_ema(ema, net, decay)
    # theta_ema_n = decay^n e0 + (1 - decay^n) p for a constant p
    expected = decay**n * e0 + (1 - decay**n) * 3.0
    torch.testing.assert_close(ema.weight, expected)
    torch.testing.assert_close(ema.bias, torch.zeros(3))
    assert torch.equal(ema.running_mean, torch.full((3,), 7.0))


def test_ema_decay_warmup():
    assert ema_decay_at(0, 0.999, warmup=False) == 0.999
    assert ema_decay_at(0, 0.999, warmup=True) == pytest.approx(0.1)
    assert ema_decay_at(10, 0.999, warmup=True) == pytest.approx(11 / 20)
    assert ema_decay_at(10**6, 0.999, warmup=True) == 0.999


def test_ema_tracks_the_training_trajectory(tmp_path):
    """The EMA after a fit equals the EMA recomputed from the recorded per-step weights."""

    class Record(L.Callback):
        def __init__(self):
            self.weights = []

        def on_train_batch_end(self, trainer, pl_module, *args):
            self.weights.append([p.detach().clone() for p in pl_module.net.parameters()])

    rec = Record()
    module, _ = tiny_run(tmp_path, 7, callbacks=[rec], ema_decay=0.7, ema_warmup=True)
    init = make_ema(tiny_net())  # the same initial weights: seeded identically
    with torch.random.fork_rng(devices=[]):
        L.seed_everything(0, verbose=False)
        init = tiny_net()
    ema = [p.detach().clone() for p in init.parameters()]
    for n, weights in enumerate(rec.weights):
        beta = min(0.7, (1 + n) / (10 + n))
        ema = [beta * e + (1 - beta) * w for e, w in zip(ema, weights)]
    for e, p in zip(ema, module.ema_net.parameters()):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(module.ema_net[0].weight, module.net[0].weight)


# --- DiffusionModule -------------------------------------------------------------------------


def test_split_loss_accepts_tensor_or_dict_and_rejects_the_rest():
    loss, extras = _split_loss({"loss": torch.tensor(2.0), "mse": torch.tensor(1.0)})
    assert loss.item() == 2.0 and set(extras) == {"mse"}
    assert _split_loss(torch.tensor(1.0))[1] == {}
    with pytest.raises(ValueError, match="without a 'loss' key"):
        _split_loss({"mse": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="scalar"):
        _split_loss(torch.ones(3))
    with pytest.raises(ValueError, match="Tensor or a dict"):
        _split_loss(1.0)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"optimizer": "sgd"}, "optimizer"),
        ({"lr": 0.0}, "lr"),
        ({"lr": "abc"}, "lr must be a number, got 'abc'"),  # a config typo, not a TypeError
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"grad_clip_norm": 0.0}, "grad_clip_norm"),
    ],
)
def test_module_rejects_bad_arguments(kw, msg):
    with pytest.raises(InputError, match=msg):
        DiffusionModule(tiny_net(), denoising_loss, **kw)


@pytest.mark.parametrize(
    ("name", "cls"), [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)]
)
def test_optimizer_and_linear_warmup(name, cls):
    module = DiffusionModule(
        tiny_net(), denoising_loss, optimizer=name, lr=0.1, weight_decay=0.01, warmup_steps=4
    )
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert type(opt) is cls and opt.param_groups[0]["weight_decay"] == 0.01
    assert conf["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    # The EMA copy is not optimized.
    assert {id(p) for p in opt.param_groups[0]["params"]} == {
        id(p) for p in module.net.parameters()
    }


def test_lr_scales_give_prefixed_parameters_their_own_learning_rate():
    net = tiny_net()
    module = DiffusionModule(net, denoising_loss, optimizer="adam", lr=0.01, lr_scales={"1.": 5})
    conf = module.configure_optimizers()
    opt = conf["optimizer"]
    before = [p.detach().clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    # Adam's first step moves every weight by lr (the gradient's sign): 0.01, and 0.05 in "1."
    moved = [float((p - b).abs().max()) for p, b in zip(net.parameters(), before, strict=True)]
    scales = [5 if name.startswith("1.") else 1 for name, _ in net.named_parameters()]
    assert moved == pytest.approx([0.01 * s for s in scales], rel=1e-4)
    with pytest.raises(InputError, match=r"lr_scales\['1.'\]"):
        DiffusionModule(net, denoising_loss, lr_scales={"1.": 0.0})


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_validation_uses_ema_weights_with_fixed_noise_and_leaves_rng_alone():
    module = DiffusionModule(tiny_net(), denoising_loss, ema_decay=0.9, val_seed=11)
    with torch.no_grad():
        for p in module.ema_net.parameters():
            p.add_(1.0)  # make EMA and trained weights differ
    batch = [torch.randn(8, 2)]
    before = torch.get_rng_state()
    loss = module.validation_step(batch, batch_idx=2)
    assert torch.equal(torch.get_rng_state(), before)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11 + 2)
        expected = denoising_loss(module.ema_net, batch)["loss"]
        torch.manual_seed(11 + 2)
        on_net = denoising_loss(module.net, batch)["loss"]
    assert torch.equal(loss, expected) and not torch.equal(loss, on_net)


def test_gradient_clipping_bounds_the_norm_seen_by_the_optimizer(tmp_path):
    norms = []  # (before, after) clipping, recorded inside Lightning's optimizer step

    def grad_norm(module):
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()]))

    class Recording(DiffusionModule):
        def configure_gradient_clipping(self, optimizer, *args, **kwargs):
            before = grad_norm(self.net)
            super().configure_gradient_clipping(optimizer, *args, **kwargs)
            norms.append((before, grad_norm(self.net)))

    def huge_loss(net, batch):
        return 1e4 * denoising_loss(net, batch)["loss"]

    with torch.random.fork_rng(devices=[]):
        L.seed_everything(0, verbose=False)
        data = torch.randn(16, 2)
        module = Recording(tiny_net(), huge_loss, lr=1e-6, grad_clip_norm=0.5)
        fit(
            module,
            ResumableLoader(TensorDataset(data), batch_size=8),
            tmp_path,
            max_steps=3,
            accelerator="cpu",
            progress_bar=False,
            loggers=[],
        )
    assert len(norms) == 3
    before, after = (torch.stack(x) for x in zip(*norms))
    assert (before > 10).all()
    torch.testing.assert_close(after, torch.full((3,), 0.5))  # clipped exactly to 0.5


def test_auto_precision(monkeypatch):
    assert auto_precision("cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert auto_precision("auto") == "bf16-mixed"
    assert auto_precision("cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert auto_precision("gpu") == "16-mixed"


# --- ResumableLoader ---------------------------------------------------------------------------


def _batches(loader):
    return [b[0].flatten().tolist() for b in loader]


def _flat(lists):
    return [x for xs in lists for x in xs]


def test_resumable_loader_order_depends_only_on_seed_and_epoch():
    ds = TensorDataset(torch.arange(20.0))
    a, b = ResumableLoader(ds, 4, seed=1), ResumableLoader(ds, 4, seed=1)
    assert _batches(a) == _batches(b)
    first = _batches(a)
    a.sampler.set_epoch(1)
    second = _batches(a)
    assert first != second
    assert sorted(_flat(first)) == sorted(_flat(second)) == list(range(20))
    assert _batches(ResumableLoader(ds, 4, seed=2)) != first
    assert _batches(ResumableLoader(ds, 4, shuffle=False)) == [
        [float(i) for i in range(j, j + 4)] for j in range(0, 20, 4)
    ]


def test_resumable_loader_state_skips_consumed_batches_of_the_same_epoch():
    ds = TensorDataset(torch.arange(20.0))
    full = ResumableLoader(ds, 4, seed=1)
    full.sampler.set_epoch(3)
    expected = _batches(full)
    it = iter(full)
    next(it), next(it)
    state = full.state_dict()
    assert state == {"epoch": 3, "batches": 2}
    fresh = ResumableLoader(ds, 4, seed=1)
    fresh.load_state_dict(state)
    it = iter(fresh)  # Lightning iterates before it sets the epoch: the skip must wait
    fresh.sampler.set_epoch(3)
    assert [b[0].tolist() for b in it] == expected[2:]
    assert fresh.state_dict() == {"epoch": 3, "batches": 5}
    assert _batches(fresh) == expected  # the skip applies once


def test_resumable_loader_shards_by_rank(monkeypatch):
    ds = TensorDataset(torch.arange(10.0))
    shards = []
    for rank in range(3):
        monkeypatch.setattr(train_data, "_dist_rank_world", lambda r=rank: (r, 3))
        loader = ResumableLoader(ds, 2, seed=0, drop_last=False)
        assert len(loader.sampler) == 4  # ceil(10 / 3), padded by wrapping around
        shards.append(_flat(_batches(loader)))
    assert all(len(s) == 4 for s in shards)
    flat = _flat(shards)
    assert set(flat) == set(map(float, range(10))) and len(flat) == 12


def test_resumable_loader_errors():
    with pytest.raises(ValueError, match="sets `sampler` itself"):
        ResumableLoader(TensorDataset(torch.zeros(4)), 2, sampler=None)


# --- checkpoints, fit and resume (in-process) --------------------------------------------------


def test_rng_state_round_trip_is_weights_only_loadable(tmp_path):
    import random

    import numpy as np

    state = get_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    a = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    b = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]


def test_atomic_checkpoint_io_survives_a_failing_write(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(2)}, path)

    def failing_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(2)}, path)
    assert io.load_checkpoint(path)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    with pytest.raises(ValueError, match="weights_only=False"):
        io.load_checkpoint(path, weights_only=False)


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_checkpoint_loading_refuses_pickled_objects(tmp_path):
    torch.save({"state_dict": {}, "evil": _Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(InputError, match=r"evil\.ckpt: not a polydiff checkpoint") as err:
        load_checkpoint(tmp_path / "evil.ckpt")
    assert "weights_only=False" not in str(err.value)  # never suggests unpickling it
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(InputError, match=r"notes\.ckpt: not a complete checkpoint"):
        load_checkpoint(tmp_path / "notes.ckpt")
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_fit_writes_checkpoints_logs_and_resumes_exactly(tmp_path):
    """Stop at step 6 (mid-epoch), rerun to 10: same weights as 10 steps in one go."""
    straight, _ = tiny_run(tmp_path / "a", 10, val=True)
    _, trainer = tiny_run(tmp_path / "b", 6, val=True)
    assert trainer.global_step == 6
    ckpts = tmp_path / "b" / "checkpoints"
    # every 5 steps + the final state; keep_checkpoints=1 keeps only the newest periodic one
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "step=00000006.ckpt"]
    ckpt = load_checkpoint(ckpts / "last.ckpt")  # weights_only=True
    assert ckpt["global_step"] == 6
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches": 2}
    ]
    resumed, trainer = tiny_run(tmp_path / "b", 10, val=True)
    assert trainer.global_step == 10
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert straight._ema_updates == resumed._ema_updates == 10

    rows = list(csv.DictReader(open(tmp_path / "a" / "logs" / "version_0" / "metrics.csv")))
    assert {"train/loss", "train/t_mean", "val/loss"} <= set(rows[0])
    assert [r["step"] for r in rows if r["train/loss"]] == [str(s) for s in range(10)]
    assert sum(1 for r in rows if r["val/loss"]) == 2  # validated at steps 5 and 10
    # the loss history across both launches of the resumed run is the straight run's
    history = logged_losses(tmp_path / "b")
    assert len(history) == 10 and history == logged_losses(tmp_path / "a")
    assert history == [float(r["train/loss"]) for r in rows if r["train/loss"]]
    # A second launch after completion does no work and leaves the checkpoint alone.
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    again, trainer = tiny_run(tmp_path / "a", 10)
    assert trainer.global_step == 10
    assert torch.equal(again.net[0].weight, straight.net[0].weight)
    assert last.read_bytes() == before


def test_progress_counts_steps_out_of_the_total_and_resumes_at_the_checkpoint(tmp_path, capsys):
    """Issue 14 item 7: the bar shows optimizer steps of max_steps (not batches of an epoch:
    4 batches make an epoch here), and a resumed run starts at its checkpoint's step."""
    tiny_run(tmp_path / "run", 6, progress_bar=True)
    first = capsys.readouterr().err
    assert "6/6" in first and "train" in first and "loss" in first
    assert "4/4" not in first  # an epoch's batches are not the unit
    tiny_run(tmp_path / "run", 10, progress_bar=True)
    second = capsys.readouterr().err
    assert " 6/10" in second and "10/10" in second and " 0/10" not in second


def test_a_cut_short_last_checkpoint_falls_back_to_the_newest_complete_one(tmp_path):
    """A truncated last.ckpt (full disk, killed copy): resume from the newest complete
    step checkpoint beside it, say so, and end where an uninterrupted run ends."""
    straight, _ = tiny_run(tmp_path / "a", 9, checkpoint_every=3)
    tiny_run(tmp_path / "b", 6, checkpoint_every=3, keep=-1)
    ckpts = tmp_path / "b" / "checkpoints"
    for name in ("last.ckpt", "step=00000006.ckpt"):  # both cut short: step 3 is the newest
        data = (ckpts / name).read_bytes()
        (ckpts / name).write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=r"last\.ckpt: damaged .* from step=00000003\.ckpt"):
        resumed, trainer = tiny_run(tmp_path / "b", 9, checkpoint_every=3, keep=-1)
    assert trainer.global_step == 9
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    for path in ckpts.glob("*.ckpt"):  # nothing complete left: one clear error, no traceback
        path.write_bytes(b"PK")
    with pytest.raises(InputError, match="no complete checkpoint to resume from"):
        tiny_run(tmp_path / "b", 12, checkpoint_every=3)


def test_fit_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="max_steps"):
        fit(DiffusionModule(tiny_net(), denoising_loss), None, tmp_path, max_steps=0)
    with pytest.raises(ValueError, match="keep_checkpoints"):
        fit(
            DiffusionModule(tiny_net(), denoising_loss),
            None,
            tmp_path,
            max_steps=1,
            keep_checkpoints=0,
        )
    atomic_write_text(tmp_path / "file", "x")
    with pytest.raises(ValueError, match="not a directory"):
        fit(DiffusionModule(tiny_net(), denoising_loss), None, tmp_path / "file", max_steps=1)


# --- export / load ----------------------------------------------------------------------------


def _module_with_distinct_ema():
    module = DiffusionModule(tiny_net(), denoising_loss, ema_decay=0.9)
    with torch.no_grad():
        for p in module.ema_net.parameters():
            p.mul_(0.5).add_(0.25)
    return module


def test_export_round_trip_uses_ema_by_default(tmp_path):
    module = _module_with_distinct_ema()
    config = {"hidden": 16, "path": "flow", "sizes": [3, 2]}
    out = export(module, tmp_path / "export", config)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert load_config(out) == config
    assert load_config(out / "config.json") == config
    assert safetensors_metadata(out / "model.safetensors")["ema"] == "True"
    net = load_weights(out, tiny_net())
    for a, b in zip(net.parameters(), module.ema_net.parameters()):
        assert torch.equal(a, b)
    export(module, tmp_path / "raw", config, ema=False)
    net = load_weights(tmp_path / "raw" / "model.safetensors", tiny_net())
    for a, b in zip(net.parameters(), module.net.parameters()):
        assert torch.equal(a, b)
    # A bare network exports its own weights.
    bare = tiny_net()
    export(bare, tmp_path / "bare", {})
    assert (
        load_safetensors(tmp_path / "bare" / "model.safetensors").keys() == bare.state_dict().keys()
    )


def test_load_weights_never_unpickles(tmp_path, monkeypatch):
    module = _module_with_distinct_ema()
    export(module, tmp_path, {"a": 1})

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling is not allowed when loading weights")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    net = load_weights(tmp_path, tiny_net())
    assert torch.equal(net[0].weight, module.ema_net[0].weight)
    assert load_config(tmp_path) == {"a": 1}


def test_load_weights_errors_name_file_and_keys(tmp_path):
    export(tiny_net(), tmp_path, {})
    weights = re.escape(str(tmp_path / "model.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"elsewhere/model\.safetensors"):
        load_weights(tmp_path / "elsewhere", tiny_net())
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_config(tmp_path / "elsewhere")
    wider = nn.Sequential(nn.Linear(3, 32), nn.SiLU(), nn.Linear(32, 2))
    with pytest.raises(
        ValueError, match=weights + r".*0\.weight: file \(16, 3\) vs network \(32, 3\)"
    ):
        load_weights(tmp_path, wider)
    deeper = nn.Sequential(nn.Linear(3, 16), nn.SiLU(), nn.Linear(16, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=weights + r".*missing \['3\.bias', '3\.weight'\]"):
        load_weights(tmp_path, deeper)
    load_weights(tmp_path, deeper, strict=False)  # loads the keys that exist
    renamed = nn.Sequential()
    renamed.add_module("inp", nn.Linear(3, 16))
    with pytest.raises(ValueError, match=r"unexpected \['0\.bias', '0\.weight', '2\.bias'"):
        load_weights(tmp_path, renamed)
    with pytest.raises(ValueError, match=r"bad/config\.json.*JSON"):
        export(tiny_net(), tmp_path / "bad", {"f": float("inf")})
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="no EMA"):
        export(DiffusionModule(tiny_net(), denoising_loss, ema_decay=None), tmp_path / "x", {})


def test_export_from_checkpoint_without_the_module(tmp_path):
    module, _ = tiny_run(tmp_path / "run", 4)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = export_checkpoint(ckpt, tmp_path / "export", {"steps": 4})
    net = load_weights(out, tiny_net())
    for a, b in zip(net.parameters(), module.ema_net.parameters()):
        assert torch.equal(a, b)
    raw = checkpoint_state_dict(ckpt, ema=False)
    assert torch.equal(raw["0.weight"], module.net[0].weight)
