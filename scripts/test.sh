#!/usr/bin/env bash
# Install OpenMaia with every extra and run the test suite (default tier unless told otherwise).
# Arguments go to pytest: `-m slow` for the long tier, `--seed N`, `--sim icarus`, `--waves vcd`.
source "$(dirname "$0")/_venv.sh" "all"
exec .venv/bin/python -m pytest -n "${OPENMAIA_JOBS:-auto}" "$@"
