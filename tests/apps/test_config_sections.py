"""The command line's config sections are the library's config dataclasses: every key of a
section is a field of the dataclass the verb builds from it (a renamed field fails here, not in a
user's run), and where a section documents the library's defaults they agree."""

from __future__ import annotations

import dataclasses
from importlib.resources import files

import pytest
from omegaconf import OmegaConf

from polydiff.medical.prior import PriorConfig
from polydiff.speech.method import OUVEConfig
from polydiff.speech.storm import StoRMConfig
from polydiff.text.nets.transformer import TransformerConfig

# (config file, section, dataclass, whether the section's non-null values are its defaults)
SECTIONS = [
    ("speech/train.yaml", "sde", OUVEConfig, True),
    ("speech/train.yaml", "storm", StoRMConfig, True),
    ("medical/train.yaml", "prior", PriorConfig, True),
    ("text/train.yaml", "model", TransformerConfig, False),  # the CLI's model is smaller
]


@pytest.mark.parametrize(("file", "section", "config", "defaults"), SECTIONS)
def test_section_keys_are_fields_of_the_config(file, section, config, defaults):
    conf = OmegaConf.load(files("polydiff.apps") / "conf" / file)
    values = OmegaConf.to_container(conf[section])
    fields = {f.name: f for f in dataclasses.fields(config)}
    assert set(values) <= set(fields), f"{file}:{section}: not fields {set(values) - set(fields)}"
    if defaults:
        for key, value in values.items():
            if value is not None and fields[key].default is not dataclasses.MISSING:
                assert fields[key].default == value, f"{file}:{section}.{key}"
