"""The `polydiff` command: `polydiff <domain> <verb> [key=value ...]` and `polydiff demo`.

The first one or two words pick a Hydra primary config (`conf/<domain>/<verb>.yaml` or
`conf/demo.yaml`); everything after them is handed to `hydra.main` unchanged, so overrides,
`--cfg job`, `-m` multirun, launchers and sweepers are Hydra's own. Before that, the overrides are
checked with Hydra's compose API so that an unknown key or a malformed override ends in one
clear line and exit code 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from polydiff.apps import registry
from polydiff.apps.registry import CONF_DIR, DOMAINS, ConfigError, StageResult, Verb
from polydiff.core.errors import InputError
from polydiff.core.progress import progress_bar

PROG = "polydiff"
EXIT_USAGE = 2
_HELP = ("-h", "--help")
_UNSUPPORTED = {
    "config_path": "--config-path",
    "config_name": "--config-name",
    "config_dir": "--config-dir (use hydra.searchpath=[file:///dir] instead)",
    "experimental_rerun": "--experimental-rerun",
}
DEMO_SUMMARY = "Run every domain's demo stage; write runs/demo/<timestamp>/report.md."

log = logging.getLogger(__name__)


class UsageError(Exception):
    """Bad command line: printed as one line on stderr, exit code 2."""


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (`polydiff = polydiff.apps.cli:main`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = _one_line_warning
    try:
        code = console(args)
    except BrokenPipeError:  # e.g. `polydiff --help | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def console(argv: list[str]) -> int:
    """The console script without `sys.exit`: a usage error is one line, exit code 2."""
    try:
        return dispatch(argv)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A library warning (a clipped input, an output above the model's band) is a notice for
    the user, not a trace for a developer: one line, without the source location."""
    return f"{PROG}: warning: {message}\n"


def dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in _HELP:
        print(top_help())
        return 0
    head = argv[0]
    if head == "--version":
        from importlib.metadata import version

        print(f"polydiff-apps {version('polydiff-apps')}")
        return 0
    if head == "demo":
        return run_hydra("demo", "polydiff demo", argv[1:], _demo_task, _demo_check)
    if head not in DOMAINS:
        hint = " (options go after `polydiff <domain> <verb>`)" if head.startswith("-") else ""
        raise UsageError(
            f"unknown domain {head!r}{hint}; choose one of: {', '.join(DOMAINS)}, demo"
        )
    if len(argv) == 1 or argv[1] in _HELP:
        print(domain_help(head))
        return 0
    verbs = registry.verbs(head)
    name = argv[1]
    if name not in verbs:
        known = ", ".join(verbs) if verbs else "none yet"
        raise UsageError(f"unknown verb {name!r} for domain {head} (verbs: {known})")
    verb = verbs[name]
    if not verb.config_file.is_file():
        raise UsageError(f"verb {head} {name} has no config file {verb.config_file}")
    try:
        args = verb.to_overrides(argv[2:])
    except ValueError as err:
        raise UsageError(f"polydiff {head} {name}: {err}") from None
    return run_hydra(verb.config_name, f"polydiff {head} {name}", args, _verb_task(verb))


# ----------------------------------------------------------------------------- help texts


def top_help() -> str:
    width = max(len(d) for d in (*DOMAINS, "demo")) + 2
    lines = [
        f"usage: {PROG} <domain> <verb> [key=value ...] [--cfg job] [-m]",
        f"       {PROG} demo [domains=[core,...]] [quick=true]",
        "",
        "Diffusion and flow models for non-image data. Every option is a Hydra override.",
        "",
        "domains:",
    ]
    for d in DOMAINS:
        n = len(registry.verbs(d))
        suffix = "" if n else " (no verbs yet)"
        lines.append(f"  {d:<{width}}{registry.domain_summary(d)}{suffix}")
    lines += [
        "",
        "commands:",
        f"  {'demo':<{width}}{DEMO_SUMMARY}",
        "",
        f"`{PROG} <domain> --help` lists a domain's verbs; "
        f"`{PROG} <domain> <verb> --help` its options.",
    ]
    return "\n".join(lines)


def domain_help(domain: str) -> str:
    verbs = registry.verbs(domain)
    lines = [f"usage: {PROG} {domain} <verb> [key=value ...]", "", registry.domain_summary(domain)]
    if not verbs:
        lines += ["", f"Domain {domain} has no verbs yet."]
    else:
        width = max(len(v) for v in verbs) + 2
        lines += ["", "verbs:"] + [f"  {n:<{width}}{v.summary}" for n, v in verbs.items()]
        lines += ["", f"`{PROG} {domain} <verb> --help` lists the options of a verb."]
    return "\n".join(lines)


def command_help(config_name: str, title: str, description: str, overrides: list[str]) -> str:
    from polydiff.apps.helptext import options_help
    from polydiff.apps.registry import compose_config

    try:
        cfg = compose_config(config_name, overrides)
    except Exception:
        cfg = compose_config(config_name)
    return "\n".join(
        [
            f"usage: {title} [key=value ...] [--cfg job|hydra|all] [-m key=a,b ...]",
            "",
            inspect.cleandoc(description),
            "",
            "options (key=default, then help):",
            options_help(cfg, CONF_DIR / f"{config_name}.yaml"),
            "",
            f"Outputs: runs/{config_name}/<timestamp>/ (multirun: one numbered folder per job).",
            "Hydra: --cfg job prints the resolved config, -m sweeps comma-separated values",
            "(key=a,b), hydra/launcher=... picks a launcher; --hydra-help shows the rest.",
        ]
    )


# ----------------------------------------------------------------------------- hydra glue


def _parse_hydra_flags(rest: list[str]) -> argparse.Namespace:
    from hydra._internal.utils import get_args_parser  # Hydra's own parser of hydra.main flags

    parser = get_args_parser()

    def fail(message: str) -> None:
        raise UsageError(message)

    parser.error = fail  # type: ignore[method-assign]
    args = parser.parse_args(rest)
    for attr, flag in _UNSUPPORTED.items():
        if getattr(args, attr, None):
            raise UsageError(f"{flag} is not supported by {PROG}")
    modes = [args.run, args.multirun, args.cfg, args.info, args.shell_completion]
    if sum(bool(m) for m in modes) > 1:  # Hydra would raise a bare ValueError
        raise UsageError("only one of --run, -m/--multirun, --cfg, --info, --shell-completion")
    return args


def _one_line(err: BaseException, title: str) -> str:
    """The first line of each message in the exception chain; unknown keys get a clear hint."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    chain: list[BaseException] = []
    e: BaseException | None = err
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        key = getattr(e, "full_key", None)
        if isinstance(e, ConfigKeyError | ConfigAttributeError) and key:
            return (
                f"unknown option {key!r} for `{title}` (see `{title} --help`; "
                f"to add a new key use +{key}=...)"
            )
    parts: list[str] = []
    for e in chain:
        first = str(e).strip().split("\n", 1)[0].strip()
        if first and first != "None" and first not in parts:
            parts.append(first)
    return " ".join(parts) or type(err).__name__


def _variants(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Override lists to validate: the overrides, or in multirun one list per swept value."""
    if not multirun:
        return [overrides]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    values: list[list[str]] = []
    for o in parsed:
        if not o.is_sweep_override():
            values.append([o.input_line])
            continue
        if o.is_interval_sweep() and not any(x.startswith("hydra/sweeper=") for x in overrides):
            raise UsageError(
                f"{o.input_line!r}: interval sweeps need a sweeper plugin (hydra/sweeper=optuna)"
            )
        try:
            swept = list(o.sweep_string_iterator())
        except Exception:  # glob / interval sweeps (e.g. Optuna's): left to the sweeper
            continue
        values.append([f"{o.get_key_element()}={v}" for v in swept])
    values = [v for v in values if v]
    base = [v[0] for v in values]
    variants = [base]
    for i, vals in enumerate(values):
        variants += [[*base[:i], v, *base[i + 1 :]] for v in vals[1:]]
    return variants


def validate(
    config_name: str,
    title: str,
    overrides: list[str],
    multirun: bool,
    check: Callable[[DictConfig], None] | None = None,
) -> None:
    """Compose the config with the overrides (each swept value once); raise UsageError if bad.

    `check(cfg)` may raise ConfigError for values that compose but cannot run.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from polydiff.apps.registry import compose_config

    parser = OverridesParser.create()
    for line in overrides:
        try:
            parser.parse_override(line)
        except Exception as err:
            raise UsageError(f"malformed override {line!r}: {_one_line(err, title)}") from None
    variants = _variants(overrides, multirun)
    try:
        for ov in variants:
            cfg = compose_config(config_name, ov)
            if check is not None:
                check(cfg)
    except ConfigError as err:
        raise UsageError(f"{title}: {err}") from None
    except Exception as err:
        raise UsageError(_one_line(err, title)) from None


def _check_output_folder(
    config_name: str, title: str, overrides: list[str], multirun: bool
) -> None:
    """The run folder (hydra.run.dir / hydra.sweep.dir, default runs/...) can be made: its
    nearest existing ancestor is a writable folder (not a file), so Hydra never fails with a
    traceback while creating it."""
    from polydiff.core.io import check_creatable

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")]
    folder = Path(given[-1] if given else f"runs/{config_name}")
    try:
        check_creatable(folder / "x", f"{key}={given[-1]}" if given else "the run folder")
    except InputError as err:
        raise UsageError(f"{title}: {err}") from None


def _check_placement(cfg: DictConfig) -> None:
    """`device=` and `trainer.accelerator=` name hardware this machine has (one line, not a
    CUDA traceback from deep inside torch or Lightning; resolve_device raises InputError)."""
    from omegaconf import OmegaConf

    device = OmegaConf.select(cfg, "device")
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if device is None and accelerator not in ("gpu", "cuda", "mps"):
        return
    from polydiff.core.utils import resolve_device

    if device is not None:
        resolve_device(str(device))
    if accelerator in ("gpu", "cuda", "mps"):
        try:
            resolve_device("mps" if accelerator == "mps" else "cuda")
        except InputError:
            raise ConfigError(
                f"trainer.accelerator={accelerator}: this machine has none (use cpu or auto)"
            ) from None


def run_hydra(
    config_name: str,
    title: str,
    rest: list[str],
    task: Callable[[DictConfig], int],
    check: Callable[[DictConfig], None] | None = None,
) -> int:
    """Check the command line, then run `task` under hydra.main; returns the exit code."""
    import hydra

    args = _parse_hydra_flags(rest)
    if args.help:
        description = _demo_doc() if config_name == "demo" else _verb_doc(config_name)
        print(command_help(config_name, title, description, args.overrides))
        return 0
    validate(config_name, title, args.overrides, args.multirun, check)
    _check_output_folder(config_name, title, args.overrides, args.multirun)
    codes: list[int] = []

    saved = sys.argv

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")
    def job(cfg: DictConfig) -> None:
        # The task sees the real command line again: Lightning's DDP launcher re-executes it.
        hydra_argv, sys.argv = sys.argv, saved
        # `import lightning` adds its own console handler; without this every line prints twice.
        logging.getLogger("lightning").propagate = False
        try:
            _check_placement(cfg)
            codes.append(task(cfg))
        except (ConfigError, InputError) as err:  # a refused file or option; bugs keep tracebacks
            print(f"{PROG}: error: {title}: {err}", file=sys.stderr)
            codes.append(EXIT_USAGE)
        finally:
            sys.argv = hydra_argv

    sys.argv = [saved[0], *rest]  # hydra.main reads its flags and overrides from sys.argv
    try:
        job()
    finally:
        sys.argv = saved
    return max(codes, default=0)


def _run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _demo_doc() -> str:
    stages = registry.demo_stages()
    listed = ", ".join(f"{d} ({s.verb.config_name.replace('/', ' ')})" for d, s in stages.items())
    return f"{DEMO_SUMMARY}\n\nRegistered demo stages: {listed or 'none'}."


def _verb_doc(config_name: str) -> str:
    domain, name = config_name.split("/", 1)
    return registry.verbs(domain)[name].fn.__doc__ or ""


def _verb_task(verb: Verb) -> Callable[[DictConfig], int]:
    def task(cfg: DictConfig) -> int:
        run_dir = _run_dir()
        earlier = _outputs(run_dir)
        with progress_bar():  # long sampling / reconstruction loops show steps on a terminal
            result = verb.fn(cfg, run_dir)
        if isinstance(result, StageResult):
            from polydiff.apps.report import Entry, write_report

            title = f"polydiff {verb.domain} {verb.name}"
            write_report(run_dir / "report.md", title, [Entry(verb.domain, None, result)])
            for key, value in result.headline.items():  # the numbers, on the console too
                print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
        replaced = sorted(
            k for k, v in _outputs(run_dir).items() if k in earlier and earlier[k] != v
        )
        if replaced:  # a rerun in the same hydra.run.dir: say what it overwrote
            names = ", ".join(replaced[:4]) + (", ..." if len(replaced) > 4 else "")
            print(f"replaced {len(replaced)} file(s) an earlier run left in {run_dir}: {names}")
        log.info("outputs in %s", run_dir)
        return 0

    return task


def _outputs(run_dir: Path) -> dict[str, int]:
    """{path relative to run_dir: modification time} of the files a verb wrote there (Hydra's
    .hydra/ record and logs left out)."""
    found = {}
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir)
        if path.is_file() and rel.parts[0] != ".hydra" and path.suffix != ".log":
            found[rel.as_posix()] = path.stat().st_mtime_ns
    return found


def _demo_check(cfg: DictConfig) -> None:
    from polydiff.apps.demo import check_demo

    check_demo(cfg)


def _demo_task(cfg: DictConfig) -> int:
    from polydiff.apps.demo import run_demo

    return run_demo(cfg, _run_dir())


if __name__ == "__main__":
    main()
