#!/usr/bin/env bash
# Install OpenMaia with every extra and run the test suite (default tier unless told otherwise).
# Arguments go to pytest: `-m slow` for the long tier, `--seed N`, `--sim icarus`, `--waves vcd`.
# The 30 slowest tests are listed at the end (docs/ci-budget.md keeps the figures).
source "$(dirname "$0")/_venv.sh" "all"
exec .venv/bin/python -m pytest -n "${OPENMAIA_JOBS:-auto}" --durations=30 "$@"
