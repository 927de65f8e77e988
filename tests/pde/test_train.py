"""Training a pde method through the core's Lightning scaffold: export, scales, resume."""

import pytest
import torch
from helpers import assert_close

from polydiff.core import load_method
from polydiff.core.errors import InputError
from polydiff.pde.data import BurgersConfig, generate_burgers
from polydiff.pde.train import TrainConfig, lr_factor, train_method
from polydiff.pde.wdno import WDNO, WDNOConfig


def test_train_exports_a_loadable_model_and_resumes(tmp_path):
    data = generate_burgers(32, BurgersConfig(nx=16, nt=8, t_end=0.5), seed=0)
    torch.manual_seed(0)
    method = WDNO(WDNOConfig(nx=16, nt=8, channels=8))
    initial = {k: v.clone() for k, v in method.net.state_dict().items()}
    config = TrainConfig(max_steps=6, batch_size=8, checkpoint_every=3, ema_decay=None)
    run = tmp_path / "run"
    module = train_method(method, data, run, config, progress_bar=False, log_every=1)
    assert module.trainer.global_step == 6
    saved = load_method(run / "model")
    assert isinstance(saved, WDNO) and saved.config == method.config
    assert_close(saved.net.scale, method.net.scale)  # measured on the data, saved as a buffer
    assert (method.net.scale != 1).sum() >= 8
    weight = "unet.conv_in.weight"
    assert not torch.equal(saved.net.state_dict()[weight], initial[weight])
    assert_close(saved.net.state_dict()[weight], method.net.state_dict()[weight])
    # the same command again resumes from last.ckpt at the last step: nothing more is trained
    again = train_method(WDNO(method.config), data, run, config, progress_bar=False, log_every=1)
    assert again.trainer.global_step == 6
    assert_close(again.net.state_dict()[weight], method.net.state_dict()[weight])


def test_learning_rate_schedules():
    cosine = TrainConfig(max_steps=110, warmup_steps=10, lr_schedule="cosine")
    assert [lr_factor(s, cosine) for s in (0, 4)] == [0.1, 0.5]  # linear warmup
    assert lr_factor(10, cosine) == 1.0 and lr_factor(110, cosine) == pytest.approx(0.0)
    assert lr_factor(60, cosine) == pytest.approx(0.5)  # half way down the half cosine
    assert lr_factor(500, TrainConfig(max_steps=110)) == 1.0
    with pytest.raises(InputError, match=r"^lr_schedule: expected one of"):
        TrainConfig(lr_schedule="linear")


def test_cosine_schedule_reaches_zero_in_training(tmp_path):
    data = generate_burgers(16, BurgersConfig(nx=16, nt=8, t_end=0.5), seed=0)
    method = WDNO(WDNOConfig(nx=16, nt=8, channels=8))
    config = TrainConfig(max_steps=4, batch_size=8, lr_schedule="cosine", ema_decay=None)
    module = train_method(method, data, tmp_path / "run", config, progress_bar=False)
    assert module.trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0] == pytest.approx(0)


def test_ema_warmup_lets_a_short_run_export_trained_weights(tmp_path):
    data = generate_burgers(16, BurgersConfig(nx=16, nt=8, t_end=0.5), seed=0)
    moved = {}
    for warmup in (False, True):
        torch.manual_seed(0)
        method = WDNO(WDNOConfig(nx=16, nt=8, channels=8))
        initial = method.net.state_dict()["unet.conv_in.weight"].clone()
        config = TrainConfig(max_steps=3, batch_size=8, ema_decay=0.999, ema_warmup=warmup)
        train_method(method, data, tmp_path / str(warmup), config, progress_bar=False)
        exported = load_method(tmp_path / str(warmup) / "model").net.state_dict()
        trained = method.net.state_dict()["unet.conv_in.weight"]
        moved[warmup] = float(
            (exported["unet.conv_in.weight"] - initial).norm() / (trained - initial).norm()
        )
    # without the warm-up the EMA keeps ~0.999^3 of the initial weights: it has hardly moved
    assert moved[False] < 0.05 < 0.5 < moved[True]
