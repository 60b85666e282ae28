"""pytest options shared by every test: the simulator, waveforms and the seed.

``--sim icarus`` runs the cocotb benches on Icarus Verilog, ``--waves vcd|fst`` dumps waveforms
into each run folder, ``--seed N`` reruns a printed seed exactly (also for hypothesis-free random
tests through the ``seed`` fixture). They reach the harness as environment variables, so they also
reach pytest-xdist workers.
"""

import importlib.util
import os
import random
import secrets
from pathlib import Path

import pytest

from openmaia.harness.toolchain import fst_missing_reason, have_icarus


def pytest_addoption(parser):
    group = parser.getgroup("openmaia")
    group.addoption("--sim", choices=("verilator", "icarus"), default=None,
                    help="simulator for cocotb benches (default: verilator)")
    group.addoption("--waves", choices=("vcd", "fst"), default=None,
                    help="dump waveforms of every cocotb run into its run folder")
    group.addoption("--seed", type=int, default=None,
                    help="seed for every randomised test and cocotb bench (default: random)")


def pytest_configure(config):
    for option, env in (("sim", "OPENMAIA_SIM"), ("waves", "OPENMAIA_WAVES"),
                        ("seed", "OPENMAIA_SEED")):
        value = config.getoption(option)
        if value is not None:
            os.environ[env] = str(value)
    if config.getoption("sim") == "icarus" and not have_icarus():
        raise pytest.UsageError("--sim icarus needs Icarus Verilog (Debian package iverilog)")
    if config.getoption("waves") == "fst" and fst_missing_reason():
        raise pytest.UsageError(f"--waves fst: {fst_missing_reason()}")


@pytest.fixture
def seed(request) -> int:
    """A seed for a randomised test: --seed if given, otherwise fresh; printed either way."""
    env = os.environ.get("OPENMAIA_SEED")
    value = int(env) if env else secrets.randbits(31)
    print(f"{request.node.nodeid}: seed {value} (rerun with --seed {value})")
    return value


@pytest.fixture
def rng(seed) -> random.Random:
    return random.Random(seed)


@pytest.fixture
def icarus():
    """Skip unless Icarus Verilog is installed."""
    if not have_icarus():
        pytest.skip("Icarus Verilog is not installed (Debian package iverilog)")
    return "icarus"


@pytest.fixture
def fst():
    """Skip unless Verilator can write FST waveforms here."""
    reason = fst_missing_reason()
    if reason:
        pytest.skip(reason)
    return "fst"


@pytest.fixture(scope="session")
def load_script():
    """``load_script("name")``: the module of ``scripts/name.py`` (scripts are not a package)."""
    def load(name):
        path = Path(__file__).parents[2] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
