"""The slice prior's training recipe: config round trip, the loss's value, a tiny training run
through polydiff.core.train with export and loading back into the solvers."""

from __future__ import annotations

import json

import pytest
import torch

from polydiff.core.paths import VPLinear
from polydiff.medical.operators import ParallelBeamCT
from polydiff.medical.prior import (
    PriorConfig,
    SlicePriorMethod,
    build_training,
    eps_model,
    load_prior,
    load_prior_method,
    prior_folder,
    prior_image_size,
    prior_loss,
    shipped_prior_dir,
    train_prior,
    training_slices,
)
from polydiff.medical.solvers import SlicePrior, dds

METHOD_LAYOUT = {
    "format": "polydiff-method",
    "version": 1,
    "domain": "medical",
    "method": "slice_prior",
}
TINY = PriorConfig(
    image_size=16,
    unet_overrides={"channels": 8, "channel_mult": (1, 2), "groups": 4},
    n_volumes=1,
    batch_size=8,
    warmup_steps=1,
    max_steps=3,
    checkpoint_every=3,
)


def test_config_round_trip_and_errors():
    d = json.loads(json.dumps(TINY.to_dict()))
    back = PriorConfig.from_dict(d)
    assert back.unet_config() == TINY.unet_config()
    assert back.image_size == 16 and back.max_steps == 3
    assert json.loads(json.dumps(back.to_dict())) == d  # every field survives the round trip
    with pytest.raises(ValueError, match=r"unknown PriorConfig fields \['bogus'\]"):
        PriorConfig.from_dict({**d, "bogus": 1})
    for bad, named in [
        ({"image_size": 4}, r"prior\.image_size=4: must be >= 8"),
        ({"n_volumes": 0}, r"prior\.n_volumes=0"),
        ({"batch_size": 0}, r"prior\.batch_size=0"),
        ({"max_steps": 0}, r"prior\.max_steps=0"),
        ({"lr": 0.0}, r"prior\.lr=0\.0: must be > 0"),
        ({"ema_decay": 1.0}, r"prior\.ema_decay=1\.0: must be in \[0, 1\)"),
    ]:
        with pytest.raises(ValueError, match=named):  # each message names the one bad field
            PriorConfig(**bad)
    assert PriorConfig().unet_config().channels == 16  # the cpu-small default
    with pytest.raises(ValueError, match="data_kind='noise'"):
        PriorConfig(data_kind="noise")
    with pytest.raises(ValueError, match="huge"):
        PriorConfig(unet="huge")  # an unknown preset fails before any data is made


def test_training_slices_are_seeded_phantom_slices():
    a, b = training_slices(TINY), training_slices(TINY)
    assert a.shape == (16, 1, 16, 16)
    torch.testing.assert_close(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and float(a.max()) > 0.5


def test_loss_of_the_zero_predictor_is_the_noise_energy():
    """eps_theta = 0 gives E||eps||^2 / n = 1 per pixel (here averaged over 4096 draws)."""

    class Zero(torch.nn.Module):
        def forward(self, x, c_noise):
            return torch.zeros_like(x)

    torch.manual_seed(0)
    x0 = torch.rand(64, 1, 8, 8)
    loss = prior_loss(Zero(), (x0,), VPLinear())
    assert abs(float(loss) - 1.0) < 0.05


def test_eps_model_feeds_the_ddpm_step_scale():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x, c_noise):
            seen["c"] = c_noise
            return x

    eps_model(Probe())(torch.zeros(2, 1, 8, 8), torch.tensor([0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(seen["c"], torch.tensor([499.5, 999.0]))


def test_tiny_training_exports_a_loadable_prior(tmp_path):
    module = train_prior(TINY, tmp_path / "run", progress_bar=False)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    prior = load_prior(tmp_path / "run" / "model")
    assert isinstance(prior, SlicePrior) and prior.prediction == "eps"
    x, t = torch.randn(3, 16, 16), torch.tensor(0.4, dtype=torch.float64)
    with torch.no_grad():
        want = module.eval_net(x.unsqueeze(1), 999.0 * 0.4).squeeze(1)
    torch.testing.assert_close(prior(x, t), want)
    assert not any(p.requires_grad for p in prior.model_fn.parameters())
    # the loaded prior plugs into a solver
    op = ParallelBeamCT(16, n_views=4, cache=False)
    rec = dds(prior, op, op.forward(torch.rand(4, 16, 16)), steps=2)
    assert rec.x.shape == (4, 16, 16) and rec.nfe == 2 and bool(torch.isfinite(rec.x).all())


def test_build_training_wires_the_loss_to_the_network():
    """A few Adam steps on one batch, with the loss's t and noise fixed, lower the loss."""
    module, loader = build_training(TINY)
    (batch,) = next(iter(loader))
    assert batch.shape == (8, 1, 16, 16)

    def fixed_noise_loss():
        torch.manual_seed(0)
        return module.loss_fn(module.net, (batch,))

    before = fixed_noise_loss()
    assert before.dim() == 0
    optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-3)
    for _ in range(5):
        optimizer.zero_grad()
        fixed_noise_loss().backward()
        optimizer.step()
    after = fixed_noise_loss().item()
    assert after < 0.9 * before.item(), (before.item(), after)


def test_load_prior_rejects_foreign_configs(tmp_path):
    from polydiff.core.train import export

    export(torch.nn.Linear(2, 2), tmp_path / "m", {"hidden": 2})
    with pytest.raises(ValueError, match=r"not a polydiff\.medical prior"):
        load_prior(tmp_path / "m")
    export(torch.nn.Linear(2, 2), tmp_path / "n", {**METHOD_LAYOUT, "config": {}})
    with pytest.raises(ValueError, match=r"names no slice size \(image_size\)"):
        prior_image_size(tmp_path / "n")
    text = {**METHOD_LAYOUT, "domain": "text", "method": "mdlm"}
    export(torch.nn.Linear(2, 2), tmp_path / "t", text)
    with pytest.raises(ValueError, match=r"not a polydiff\.medical prior"):
        prior_image_size(tmp_path / "t")


def test_shipped_prior_is_picked_by_slice_size():
    folder = shipped_prior_dir(image_size=32)
    assert folder == shipped_prior_dir()  # phantom-32, the default
    saved = json.loads((folder / "config.json").read_text())
    assert saved["method"] == "slice_prior" and saved["config"]["image_size"] == 32
    big = shipped_prior_dir(image_size=64)  # phantom-64 (session 4)
    assert json.loads((big / "config.json").read_text())["config"]["image_size"] == 64
    with pytest.raises(FileNotFoundError, match=r"48x48 slices \(shipped: 32x32, 64x64\)"):
        shipped_prior_dir(image_size=48)


def test_shipped_sizes_come_from_each_priors_config(tmp_path, monkeypatch):
    """The sizes are read from config.json, not from the folder names."""
    import polydiff.medical.prior as prior_module
    from polydiff.core.io import atomic_write_json

    for folder, size in (("head-small", 24), ("phantom-32", 40), ("no-weights", 16)):
        (tmp_path / folder).mkdir()
        saved = {**METHOD_LAYOUT, "config": {"image_size": size}}
        if folder == "head-small":  # the layout exported before the core method's is read too
            saved = {"prior": {"image_size": size}, "unet": {}}
        atomic_write_json(tmp_path / folder / "config.json", saved)
        if folder != "no-weights":
            (tmp_path / folder / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(prior_module, "CHECKPOINTS", tmp_path)
    assert shipped_prior_dir(image_size=40) == tmp_path / "phantom-32"
    assert shipped_prior_dir(image_size=24) == tmp_path / "head-small"
    with pytest.raises(FileNotFoundError, match=r"32x32 slices \(shipped: 24x24, 40x40\)"):
        shipped_prior_dir(image_size=32)  # a folder named phantom-32 is not a 32^2 prior
    with pytest.raises(FileNotFoundError, match=r"16x16 slices .*prior\.image_size=16"):
        shipped_prior_dir(image_size=16)  # config without weights: not shipped


def test_slice_prior_is_a_registered_core_method(tmp_path):
    from polydiff.core.method import list_methods, load_method, method_class

    assert "slice_prior" in list_methods("medical")
    assert method_class("medical", "slice_prior") is SlicePriorMethod
    torch.manual_seed(0)
    method = SlicePriorMethod(TINY)
    folder = method.save(tmp_path / "m")
    saved = json.loads((folder / "config.json").read_text())
    assert {k: saved[k] for k in METHOD_LAYOUT} == METHOD_LAYOUT
    assert saved["config"] == TINY.to_dict() and saved["unet"] == TINY.unet_config().to_dict()
    back = load_method(folder, domain="medical")
    assert isinstance(back, SlicePriorMethod) and back.config == TINY
    x, t = torch.randn(2, 16, 16), torch.tensor(0.3, dtype=torch.float64)
    with torch.no_grad():
        want = method.slice_prior()(x, t)
    torch.testing.assert_close(back.slice_prior()(x, t), want, rtol=0, atol=0)
    torch.testing.assert_close(load_prior(folder)(x, t), want, rtol=0, atol=0)


def test_a_prior_exported_in_the_old_layout_loads_the_same(tmp_path):
    """Folders exported before the core method layout ({"prior": ..., "unet": ...}) still load,
    to the same network."""
    torch.manual_seed(1)
    folder = SlicePriorMethod(TINY).save(tmp_path / "new")
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    saved = json.loads((folder / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({"prior": saved["config"], "unet": saved["unet"]}))
    x, t = torch.randn(2, 16, 16), torch.tensor(0.7, dtype=torch.float64)
    torch.testing.assert_close(load_prior(old)(x, t), load_prior(folder)(x, t), rtol=0, atol=0)
    assert load_prior_method(old).config == TINY


def test_shipped_priors_load_through_the_core_and_sample_slices():
    from polydiff.core.method import load_method

    folder = shipped_prior_dir(image_size=32)
    method = load_method(folder, domain="medical")
    assert method.config.image_size == 32 and prior_image_size(folder) == 32
    x, t = torch.rand(2, 32, 32), torch.tensor(0.2, dtype=torch.float64)
    torch.testing.assert_close(method.slice_prior()(x, t), load_prior(folder)(x, t), rtol=0, atol=0)
    a = method.sample(2, steps=8, generator=torch.Generator().manual_seed(0))
    b = method.sample(2, steps=8, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 32, 32) and torch.equal(a, b)  # seeded
    c = method.sample(2, steps=8, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, c)
    # phantom-like slices: near-empty corners (the head sits inside the field of view) and a
    # bright skull, unlike the prior's Gaussian start
    corners = torch.stack([a[:, :3, :3], a[:, :3, -3:], a[:, -3:, :3], a[:, -3:, -3:]])
    assert float(corners.abs().mean()) < 0.05 and float(a.amax(dim=(1, 2)).min()) > 0.5


def test_prior_folder_checks_the_slice_size(tmp_path):
    assert prior_folder((64, 64)) == shipped_prior_dir(image_size=64)
    folder = SlicePriorMethod(TINY).save(tmp_path / "m")
    assert prior_folder([16, 16], folder) == folder
    with pytest.raises(ValueError, match=r"trained on 16x16 slices; the volume's slices are 16x24"):
        prior_folder((16, 24), folder)
    with pytest.raises(FileNotFoundError, match="no shipped prior for 48x48 slices"):
        prior_folder((48, 48))


def test_real_volumes_default_to_the_anatomy_prior():
    from polydiff.medical.prior import REAL_PRIOR, shipped_priors

    anatomy = shipped_prior_dir(REAL_PRIOR)
    saved = json.loads((anatomy / "config.json").read_text())["config"]
    assert saved["data_kind"] == "anatomy" and saved["image_size"] == 64
    assert shipped_priors(real=True) == {64: anatomy}
    assert anatomy not in shipped_priors().values()  # phantoms keep their phantom priors
    assert prior_folder((64, 64), real=True) == anatomy
    assert prior_folder((64, 64)) == shipped_prior_dir("phantom-64")
    assert prior_folder((32, 32), real=True) == shipped_prior_dir("phantom-32")  # no anatomy-32


def test_training_can_start_from_a_saved_prior(tmp_path):
    start = SlicePriorMethod(TINY).save(tmp_path / "start")
    module, _ = build_training(PriorConfig.from_dict({**TINY.to_dict(), "init_from": str(start)}))
    want = load_prior_method(start).net.state_dict()
    for name, value in module.net.state_dict().items():
        torch.testing.assert_close(value, want[name], rtol=0, atol=0)
    fresh, _ = build_training(TINY)  # the seeded initialisation differs from the saved one
    assert any(not torch.equal(v, want[k]) for k, v in fresh.net.state_dict().items())
    with pytest.raises(FileNotFoundError, match=r"prior\.init_from=nowhere: no shipped prior"):
        build_training(PriorConfig.from_dict({**TINY.to_dict(), "init_from": "nowhere"}))


def test_prior_config_names_the_data_kinds():
    with pytest.raises(ValueError, match=r"prior.data_kind='mri': choose .* or anatomy"):
        PriorConfig(data_kind="mri")
