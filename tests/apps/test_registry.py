"""The verb / demo registries agree with the configs; YAML comments become option help."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from polydiff.apps import registry
from polydiff.apps.helptext import option_comments, options_help
from polydiff.apps.registry import CONF_DIR, DOMAINS, compose_config


def test_every_verb_has_a_config_and_every_config_a_verb():
    for domain in DOMAINS:
        verbs = registry.verbs(domain)
        files = {p.stem for p in (CONF_DIR / domain).glob("*.yaml")}
        assert set(verbs) == files, domain
        assert registry.domain_summary(domain), f"commands/{domain}.py needs a docstring"
        for verb in verbs.values():
            cfg = compose_config(verb.config_name)
            assert "hydra" not in cfg and verb.summary != "(no description)"


def test_demo_stage_quick_overrides_compose():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for stage in registry.demo_stages().values():
        cfg = compose_config(stage.verb.config_name, stage.quick)
        for override in parser.parse_overrides(list(stage.quick)):
            actual = OmegaConf.select(cfg, override.key_or_group)
            if OmegaConf.is_config(actual):
                actual = OmegaConf.to_container(actual)
            assert actual == override.value(), override.input_line


def test_option_comments(tmp_path: Path):
    f = tmp_path / "x.yaml"
    f.write_text(
        "# @package _global_\n"
        "defaults:\n  - _self_\n"
        "seed: 1  # the seed\n"
        "# the section\n"
        "train:\n"
        "  # learning rate, above the key\n"
        "  lr: 0.1\n"
        "  name: 'a # b'  # quoted hash\n"
        "plain: 3\n"
    )
    assert option_comments(f) == {
        "seed": "the seed",
        "train": "the section",
        "train.lr": "learning rate, above the key",
        "train.name": "quoted hash",
        "plain": "",
    }
    text = options_help(OmegaConf.load(f), f)
    assert "train.name=a # b" in text and "seed=1" in text and "defaults" not in text


def test_positional_argument_and_flags_become_overrides():
    v = registry.Verb("speech", "enhance", lambda cfg, d: None, "input", (("-o", "output"),))
    assert v.to_overrides(["in.wav", "-o", "out dir/o'k.wav", "N=2", "--cfg", "job"]) == [
        "input=in.wav",
        "output='out dir/o\\'k.wav'",
        "N=2",
        "--cfg",
        "job",
    ]
    # only the first bare argument is positional; without a value -o is an error
    assert v.to_overrides(["a.wav", "b"]) == ["input=a.wav", "b"]
    # a value of one of Hydra's own options is never taken for the positional argument
    assert v.to_overrides(["--cfg", "job", "a.wav"]) == ["--cfg", "job", "input=a.wav"]
    with pytest.raises(ValueError, match="-o needs a value"):
        v.to_overrides(["a.wav", "-o"])
    quoted = OmegaConf.create(compose_config("speech/enhance", v.to_overrides(["my file's.wav"])))
    assert quoted.input == "my file's.wav"
