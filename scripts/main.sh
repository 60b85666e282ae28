#!/usr/bin/env bash
# Install OpenMaia and run the main job: the whole stack on the RTL. A small MLP is trained on
# scikit-learn's digits, quantized to MX (MXFP8, and MXFP8 activations x MXFP4 weights), compiled
# by the SDK to tile commands and run on the elaborated `small` tile under Verilator (bias, ReLU
# and re-quantization on the vector unit between layers), checked bit-exact against the golden
# model; it prints accuracy against FP32, cycles and MAC utilization. The first run builds the
# tile (about 8 minutes on 2 cores); later runs take about 4 minutes. Extra arguments go to
# `openmaia run mlp-digits` (e.g. `--samples 450` for the whole test split).
source "$(dirname "$0")/_venv.sh" ""
exec .venv/bin/openmaia run mlp-digits --config small --backend rtl --recipe all --samples 64 \
    --batch 64 "$@"
