"""The core Method base: config round trips, registry lookups, save / load without pickles."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from polydiff.core.method import (
    Config,
    Method,
    list_methods,
    load_method,
    method_class,
    register_method,
)


@dataclass
class Width(Config):
    hidden: int = 8
    dims: tuple[int, int] = (2, 2)


@dataclass
class GaussConfig(Config):
    net: Width = field(default_factory=Width)
    scale: float = 1.0
    label: str | None = None


@register_method
class Gauss(Method):
    """A tiny regression 'method': enough to exercise the base."""

    domain, name, config_class = "testdomain", "gauss", GaussConfig

    def build_net(self) -> nn.Module:
        return nn.Linear(self.config.net.dims[0], self.config.net.dims[1])

    def loss_fn(self, net, batch):
        return (net(batch) - self.config.scale * batch).square().mean()

    def sample(self, n: int, *, generator=None):
        return self.net(torch.randn(n, self.config.net.dims[0], generator=generator))


def test_config_round_trip_keeps_nested_configs_and_tuples():
    cfg = GaussConfig(net=Width(hidden=3, dims=(2, 2)), scale=0.5, label="x")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data == {"net": {"hidden": 3, "dims": [2, 2]}, "scale": 0.5, "label": "x"}
    back = GaussConfig.from_dict(data)
    assert back == cfg and isinstance(back.net, Width) and back.net.dims == (2, 2)


def test_unknown_config_field_names_the_source_and_field():
    with pytest.raises(ValueError, match=r"ckpt/config.json: unknown GaussConfig fields \['bad'\]"):
        GaussConfig.from_dict({"bad": 1}, source="ckpt/config.json")
    with pytest.raises(ValueError, match="unknown Width fields"):
        GaussConfig.from_dict({"net": {"depth": 2}})


def test_registry_finds_methods_and_names_the_known_ones():
    assert method_class("testdomain", "gauss") is Gauss
    assert "gauss" in list_methods("testdomain")
    with pytest.raises(ValueError, match="unknown testdomain method 'nope'; known: gauss"):
        method_class("testdomain", "nope")
    with pytest.raises(ValueError, match="already registered"):

        @register_method
        class Other(Gauss):  # same (domain, name), another class
            pass


def test_save_and_load_give_the_same_network(tmp_path):
    torch.manual_seed(0)
    method = Gauss(GaussConfig(scale=2.0))
    method.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["domain"] == "testdomain" and saved["method"] == "gauss"
    loaded = load_method(tmp_path / "m")
    assert isinstance(loaded, Gauss) and loaded.config == method.config
    x = torch.randn(5, 2)
    assert torch.equal(loaded.net(x), method.net(x))
    assert not loaded.net.training
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(loaded.sample(4, generator=g1), method.sample(4, generator=g2))


def test_load_takes_a_config_the_caller_converted(tmp_path):
    torch.manual_seed(0)
    method = Gauss(GaussConfig(scale=2.0))
    method.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    old = {"format": "old-layout", "method": "gauss", "config": config["config"]}
    (tmp_path / "m" / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="not a saved polydiff method"):
        load_method(tmp_path / "m")
    loaded = load_method(tmp_path / "m", saved=config)
    x = torch.randn(5, 2)
    assert loaded.config == method.config and torch.equal(loaded.net(x), method.net(x))


def test_load_refuses_what_is_not_a_method(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved polydiff method"):
        load_method(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match=r"config\.json: not a saved polydiff method"):
        load_method(tmp_path)
    Gauss(GaussConfig()).save(tmp_path / "m")
    with pytest.raises(ValueError, match="a testdomain method, not a text one"):
        load_method(tmp_path / "m", domain="text")


def test_config_type_is_checked():
    with pytest.raises(TypeError, match="config must be a GaussConfig"):
        Gauss(Width())
