"""Input checks of the core that other layers turn into one-line errors: devices this machine
lacks, solvers for another kind of path, options a solver does not take."""

from __future__ import annotations

import pytest
import torch

from polydiff.core import paths
from polydiff.core.discrete import MaskedDiffusion, UniformDiffusion
from polydiff.core.errors import InputError
from polydiff.core.solvers import check_solver, get_solver, solvers_for
from polydiff.core.utils import resolve_device


def test_resolve_device_accepts_the_cpu_and_names_the_option_otherwise():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^device='gpu0' is not a torch device"):
        resolve_device("gpu0")
    count = torch.cuda.device_count()  # a GPU index past the last one, on any machine
    with pytest.raises(ValueError, match=r"^sample.device='cuda:\d+': "):
        resolve_device(f"cuda:{count + 7}", "sample.device")


def test_solvers_for_a_path_are_the_ones_that_declare_its_type():
    masked = solvers_for(MaskedDiffusion(5))
    assert {"mdlm", "mdlm_cached", "first_hitting", "remdm"} <= set(masked)
    assert "udlm" not in masked and "euler" not in masked
    assert solvers_for(UniformDiffusion(5)) == ["udlm"]
    assert solvers_for(paths.VPLinear()) == []  # continuous solvers declare no path type


@pytest.mark.parametrize(
    ("name", "path", "ok"),
    [("ddim", paths.VPLinear(), True), ("flow_heun", paths.Flow(), True),
     ("mdlm", MaskedDiffusion(5), True), ("udlm", UniformDiffusion(5), True),
     ("mdlm", paths.VPLinear(), False), ("ddim", MaskedDiffusion(5), False),
     ("udlm", MaskedDiffusion(5), False), ("mdlm", UniformDiffusion(5), False)],
)  # fmt: skip
def test_check_solver_refuses_a_solver_for_another_kind_of_path(name, path, ok):
    if ok:
        check_solver(name, path)
        return
    pattern = rf"^sample.solvers: solver '{name}' samples .*, not a {type(path).__name__}; use one "
    with pytest.raises(InputError, match=pattern) as err:
        check_solver(name, path, option="sample.solvers")
    fitting = solvers_for(path) or ["ddim", "dpmpp_2m"]
    assert all(f in str(err.value) for f in fitting)


def test_check_solver_names_an_unknown_solver():
    with pytest.raises(InputError, match=r"^solver: unknown solver 'nope'; known: .*ddim"):
        check_solver("nope", paths.VPLinear())


def test_an_option_a_solver_does_not_take_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"solver 'euler'.*temperature"):
        get_solver("euler", temperature=0.9)
