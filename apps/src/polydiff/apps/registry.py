"""The registries behind `polydiff <domain> <verb>` and `polydiff demo`.

A verb is a Python function registered with `@verb("name")` in `polydiff/apps/commands/<domain>.py`
plus its Hydra config `polydiff/apps/conf/<domain>/<name>.yaml`. A verb that returns a
`StageResult` can also be registered as its domain's demo stage with `@demo_stage(...)`.
Command modules are imported lazily (heavy imports belong inside the verb functions), so
`polydiff --help` stays fast.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

#: Every domain of polydiff, in the order `polydiff --help` and `polydiff demo` use.
DOMAINS: tuple[str, ...] = (
    "core", "text", "motion", "policy", "speech", "medical", "crystal", "pde"
)  # fmt: skip

CONF_DIR = Path(__file__).parent / "conf"

VerbFn = Callable[[DictConfig, Path], Any]


class ConfigError(ValueError):
    """A bad option value found by a verb before it starts working (the CLI exits with code 2)."""


@dataclass
class StageResult:
    """What a verb hands back so that `polydiff demo` can put it in the report.

    headline: a few numbers (or short strings) for the report's summary table.
    markdown: the body of the domain's report section (tables, comments; no image links).
    plots: (caption, path) pairs; the report embeds them with links relative to report.md.
    metrics: the full metrics, as written to the stage's metrics.json.
    """

    headline: dict[str, float | int | str]
    markdown: str = ""
    plots: list[tuple[str, Path]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verb:
    """`polydiff <domain> <name>`. `positional` names the config key a bare first argument sets
    and `flags` maps short options to config keys (`enhance in.wav -o out.wav`)."""

    domain: str
    name: str
    fn: VerbFn
    positional: str | None = None
    flags: tuple[tuple[str, str], ...] = ()

    def to_overrides(self, args: list[str]) -> list[str]:
        """Rewrite the positional argument and the flags into Hydra overrides `key=value`."""
        out, flags, rest = [], dict(self.flags), list(args)
        positional = self.positional
        while rest:
            arg = rest.pop(0)
            if arg in flags:
                if not rest:
                    raise ValueError(f"option {arg} needs a value")
                out.append(f"{flags[arg]}={_quote(rest.pop(0))}")
            elif arg in _HYDRA_VALUE_OPTIONS and rest and not rest[0].startswith("-"):
                out += [arg, rest.pop(0)]  # `--cfg job`: "job" is Hydra's, not the input
            elif positional and "=" not in arg and not arg.startswith("-"):
                out.append(f"{positional}={_quote(arg)}")
                positional = None
            else:
                out.append(arg)
        return out

    @property
    def summary(self) -> str:
        """First line of the function's docstring: the one-line help of the verb."""
        return _first_line(self.fn.__doc__) or "(no description)"

    @property
    def config_name(self) -> str:
        return f"{self.domain}/{self.name}"

    @property
    def config_file(self) -> Path:
        return CONF_DIR / self.domain / f"{self.name}.yaml"


@dataclass(frozen=True)
class DemoStage:
    """A domain's contribution to `polydiff demo`: a verb run with the demo's overrides.

    quick: overrides applied when the demo runs with quick=true (tests, CI smoke runs).
    """

    verb: Verb
    quick: tuple[str, ...] = ()

    @property
    def domain(self) -> str:
        return self.verb.domain


_VERBS: dict[str, dict[str, Verb]] = {d: {} for d in DOMAINS}
_DEMOS: dict[str, DemoStage] = {}
_LOADED: set[str] = set()


# Hydra's command-line options that take a value (`polydiff ... --cfg job`)
_HYDRA_VALUE_OPTIONS = frozenset(
    ("--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp", "--config-name",
     "-cn", "--config-dir", "-cd", "--experimental-rerun")
)  # fmt: skip


def _quote(value: str) -> str:
    """A Hydra override value: plain if it parses as one, else single-quoted (paths with spaces)."""
    if re.fullmatch(r"[\w./~+-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


def _domain_of(fn: Callable[..., Any]) -> str:
    module = fn.__module__
    prefix = "polydiff.apps.commands."
    if not module.startswith(prefix) or module[len(prefix) :] not in DOMAINS:
        raise ValueError(
            f"cannot infer the domain of verb function {fn.__qualname__} from module "
            f"{module!r}: define it in polydiff/apps/commands/<domain>.py or pass domain=..."
        )
    return module[len(prefix) :]


def verb(
    name: str,
    *,
    domain: str | None = None,
    positional: str | None = None,
    flags: dict[str, str] | None = None,
) -> Callable[[VerbFn], VerbFn]:
    """Register `fn(cfg, run_dir)` as `polydiff <domain> <name>` (config conf/<domain>/<name>.yaml).

    The domain defaults to the name of the command module (`polydiff.apps.commands.<domain>`);
    the first docstring line is the verb's one-line help. `positional` / `flags` let a bare
    first argument and options like `-o` stand for config keys (`Verb.to_overrides`).
    """

    def register(fn: VerbFn) -> VerbFn:
        dom = domain or _domain_of(fn)
        if dom not in DOMAINS:
            raise ValueError(f"unknown domain {dom!r} for verb {name!r}; known: {list(DOMAINS)}")
        if name in _VERBS[dom] and _VERBS[dom][name].fn is not fn:
            raise ValueError(f"verb {dom} {name} is registered twice")
        _VERBS[dom][name] = Verb(dom, name, fn, positional, tuple((flags or {}).items()))
        fn.__polydiff_verb__ = _VERBS[dom][name]  # type: ignore[attr-defined]
        return fn

    return register


def demo_stage(*, quick: Sequence[str] = ()) -> Callable[[VerbFn], VerbFn]:
    """Make an already registered verb (apply `@verb` first, i.e. below) its domain's demo stage.

    The verb must return a `StageResult`. `quick` lists Hydra overrides for `quick=true`.
    """

    def register(fn: VerbFn) -> VerbFn:
        v = getattr(fn, "__polydiff_verb__", None)
        if not isinstance(v, Verb):
            raise ValueError(f"@demo_stage on {fn.__qualname__}: put @verb(...) below it")
        if v.domain in _DEMOS and _DEMOS[v.domain].verb.fn is not fn:
            raise ValueError(f"domain {v.domain} already has a demo stage")
        _DEMOS[v.domain] = DemoStage(v, tuple(quick))
        return fn

    return register


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose `conf/<config_name>.yaml` with overrides, inside or outside a running Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def load(domain: str) -> None:
    """Import `polydiff.apps.commands.<domain>` once, which registers its verbs and demo stage."""
    if domain not in DOMAINS:
        raise KeyError(domain)
    if domain not in _LOADED:
        importlib.import_module(f"polydiff.apps.commands.{domain}")
        _LOADED.add(domain)


def domain_summary(domain: str) -> str:
    """One-line description of a domain: the first docstring line of its command module."""
    load(domain)
    return _first_line(importlib.import_module(f"polydiff.apps.commands.{domain}").__doc__)


def verbs(domain: str) -> dict[str, Verb]:
    load(domain)
    return dict(_VERBS[domain])


def demo_stages() -> dict[str, DemoStage]:
    """Registered demo stages in `DOMAINS` order."""
    for d in DOMAINS:
        load(d)
    return {d: _DEMOS[d] for d in DOMAINS if d in _DEMOS}
