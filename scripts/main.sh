#!/usr/bin/env bash
# Install OpenMaia and run the main job: elaborate the default design, lint it, and run its
# self-check on Verilator, printing a short report. Extra arguments go to `openmaia selfcheck`.
source "$(dirname "$0")/_venv.sh" ""
exec .venv/bin/openmaia selfcheck --config default "$@"
