"""The polydiff task matrix: `nox -l` lists it, `nox -s tests` runs every distribution's tests.

Every install goes through `install()`, which always passes `-c constraints.txt` (the one torch
pin) and the machine's `PIP_FIND_LINKS` (uv does not read it), so no session pulls a second torch.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

DOMAINS = ("text", "motion", "speech", "medical", "crystal", "pde")
DIST_PATHS = {"core": "shared_core", **{d: f"packages/{d}" for d in DOMAINS}, "apps": "apps"}
TEST_TOOLS = ("pytest>=8", "pytest-xdist>=3", "hypothesis>=6")
# Field libraries that must never arrive with polydiff-core alone.
NOT_IN_CORE = ("librosa", "pymatgen", "nibabel", "gymnasium", "mujoco", "soundfile", "tokenizers")
# Programs (Debian names) that a domain's tests and demo call; apt-get installs them when missing.
# domain -> {program: the apt package that provides it}; alsa-utils ships the real speech
# recordings (/usr/share/sounds/alsa) the speech demo and benchmark use besides synthetic speech
SYSTEM_PROGRAMS = {"speech": {"espeak-ng": "espeak-ng", "aplay": "alsa-utils"}}
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def install(session: nox.Session, *args: str) -> None:
    """Install with the repo's constraints and the environment's extra wheel folders."""
    extra: list[str] = []
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        extra += ["--find-links", folder]
    session.install("-c", "constraints.txt", *extra, *args)


def ensure_programs(session: nox.Session, *domains: str) -> None:
    """Install the system programs the domains need (root + apt-get), or say what is missing."""
    missing = [
        package
        for d in domains
        for program, package in SYSTEM_PROGRAMS.get(d, {}).items()
        if not shutil.which(program)
    ]
    if not missing:
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        session.error(f"missing packages {missing}: install them with your system package manager")
    session.run("apt-get", "update", "-qq", external=True)
    session.run("apt-get", "install", "-y", "-qq", *missing, external=True)


def editable(*names: str) -> list[str]:
    """`-e path` arguments for the named distributions (core always included)."""
    paths = [DIST_PATHS["core"]] + [DIST_PATHS[n] for n in names if n != "core"]
    return [arg for p in dict.fromkeys(paths) for arg in ("-e", p)]


def pytest_args(session: nox.Session, area: str) -> list[str]:
    return ["pytest", f"tests/{area}", "-n", "2", "--dist", "loadfile", *session.posargs]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check over the whole repo."""
    install(session, "ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(name="tests-core")
def tests_core(session: nox.Session) -> None:
    """polydiff-core alone: proves it pulls no field library, then runs tests/core."""
    install(session, *editable("core"), *TEST_TOOLS)
    session.run(
        "python",
        "-c",
        "import importlib.util as u, sys; bad = [m for m in sys.argv[1:] if u.find_spec(m)]; "
        "sys.exit(f'polydiff-core pulled in field libraries: {bad}' if bad else 0)",
        *NOT_IN_CORE,
    )
    session.run(*pytest_args(session, "core"), env=THREAD_ENV)


def _domain_session(domain: str):
    def run(session: nox.Session) -> None:
        install(session, *editable(domain), *TEST_TOOLS)
        ensure_programs(session, domain)
        session.run(*pytest_args(session, domain), env=THREAD_ENV)

    run.__doc__ = f"polydiff-{domain} (+ core): runs tests/{domain}."
    return run


for _domain in DOMAINS:
    globals()[f"tests_{_domain}"] = nox.session(name=f"tests-{_domain}")(_domain_session(_domain))


@nox.session(name="tests-apps")
def tests_apps(session: nox.Session) -> None:
    """polydiff-apps with every domain: end-to-end CLI tests in tests/apps."""
    install(session, *editable(*DOMAINS, "apps"), *TEST_TOOLS)
    ensure_programs(session, *DOMAINS)
    session.run(*pytest_args(session, "apps"), env=THREAD_ENV)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The whole matrix: every tests-<dist> session in turn."""
    for name in ("core", *DOMAINS, "apps"):
        session.notify(f"tests-{name}", posargs=session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: `polydiff demo` over every registered domain (report in runs/demo/)."""
    install(session, *editable(*DOMAINS, "apps"))
    ensure_programs(session, *DOMAINS)
    session.run("polydiff", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (`nox -s bench -- core`): writes docs/benchmarks/<area>.md and .json."""
    install(session, *editable(*DOMAINS, "apps"), "diffusers>=0.30", "librosa")
    session.run("python", "benchmarks/run.py", *session.posargs)
