"""The motion diffusion model: geometric losses, a tiny training run, sampling, save/load."""

import pytest
import torch

from polydiff.core import load_method
from polydiff.core.errors import InputError
from polydiff.motion.features import FeatureLayout
from polydiff.motion.mdm import MDMConfig, MotionDiffusion, train_mdm


def tiny(dataset, **changes):
    torch.manual_seed(0)
    config = MDMConfig(frames=16, d_model=32, n_layers=1, n_heads=2, dropout=0.0, **changes)
    method = MotionDiffusion(config)
    method.set_normalizer(dataset.normalizer)
    return method


def test_geometric_losses_vanish_for_the_data_and_see_sliding_feet(dataset):
    method = tiny(dataset)
    x0 = dataset.features[:8]
    exact = method.geometric_losses(method.net, x0, x0)
    assert exact["position"] == 0.0 and exact["velocity"] == 0.0
    # HumanML3D's contact flag (< 0.045 m per frame) also marks slow swing frames
    assert exact["foot"] < 1e-4
    sliding = x0.clone()  # add 5 cm per frame of sideways root motion to every frame
    layout = FeatureLayout(22)
    sliding[..., layout.root_linear.start] += 0.05 / method.net.std[layout.root_linear.start]
    moved = method.geometric_losses(method.net, sliding, x0)
    assert moved["foot"] > 0.1 * 0.05**2 > 10 * exact["foot"]
    assert moved["position"] > 0 and moved["velocity"] > 0


def test_tiny_training_lowers_the_loss(dataset):
    method = tiny(dataset)
    batch = {"x": dataset.features, "action": dataset.actions}

    def fixed_loss():
        with torch.no_grad():
            generator = torch.Generator().manual_seed(1)
            return method.loss_fn(method.net, batch, generator=generator)["loss"].item()

    before = fixed_loss()
    optimizer = torch.optim.Adam(method.net.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(2)
    for _ in range(60):
        index = torch.randint(0, len(dataset), (16,), generator=generator)
        part = {"x": dataset.features[index], "action": dataset.actions[index]}
        loss = method.loss_fn(method.net, part, generator=generator)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_loss() < 0.6 * before


def test_sampling_with_guidance_and_saving(dataset, tmp_path):
    method = tiny(dataset)
    torch.nn.init.normal_(method.net.action.weight)  # labels must matter before training
    for block in method.net.blocks:
        torch.nn.init.normal_(block.modulation.weight, std=0.1)
    seed = torch.Generator().manual_seed
    features = method.sample(["walk", "jump"], steps=4, generator=seed(0))
    assert features.shape == (2, 16, 263) and torch.isfinite(features).all()
    assert method.positions(features).shape == (2, 16, 22, 3)
    plain = method.sample(["walk", "jump"], steps=4, guidance=1.0, generator=seed(0))
    assert not torch.allclose(plain, features)
    again = load_method(method.save(tmp_path / "mdm"))
    assert torch.equal(again.net.std, method.net.std)
    assert torch.equal(again.sample(["walk", "jump"], steps=4, generator=seed(0)), features)


def test_unknown_actions_are_input_errors(dataset):
    method = tiny(dataset)
    with pytest.raises(InputError, match="action: unknown label 'dance'"):
        method.sample(["dance"], steps=2)
    with pytest.raises(InputError, match="indices must lie"):
        method.sample([99], steps=2)


def test_train_mdm_exports_the_ema_weights_with_the_normaliser(dataset, tmp_path):
    method = tiny(dataset)
    folder = train_mdm(
        method, dataset, tmp_path / "run", max_steps=3, batch_size=8, accelerator="cpu", log_every=1
    )
    loaded = load_method(folder)
    assert torch.equal(loaded.net.mean, dataset.normalizer.mean.float())
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    features = loaded.sample(["run"], steps=2, generator=torch.Generator().manual_seed(0))
    assert features.shape == (1, 16, 263) and torch.isfinite(features).all()
