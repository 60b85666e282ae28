"""The MLP digits demo (openmaia.sdk.mlp, ``openmaia run mlp-digits``): deterministic training,
the golden-backend run bit-exact against the numpy reference chain, MX accuracy against FP32,
a faulty vector processor caught, the CLI."""

import dataclasses
import json

import numpy as np
import pytest
from openmaia.cli import main
from openmaia.config import get_config
from openmaia.numerics import quantize_mx
from openmaia.sdk import mlp as mlp_mod
from openmaia.sdk.golden import GoldenBackend
from openmaia.sdk.mlp import (
    RECIPES,
    forward_fp32,
    layers_for,
    load_digits_split,
    quantize_weights,
    reference_logits,
    run_mlp,
    train_mlp,
)
from openmaia.tile.isa import TvpCmd, TvpOp


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def trained(digits):
    return train_mlp(digits, seed=0)


def test_split_is_fixed_and_stratified(digits):
    assert digits.x_train.shape == (1347, 64) and digits.x_test.shape == (450, 64)
    assert digits.x_test.dtype == np.float32
    assert 0 <= digits.x_test.min() and digits.x_test.max() <= 1
    assert np.array_equal(np.bincount(digits.y_test), np.bincount(load_digits_split().y_test))
    assert np.bincount(digits.y_test).min() >= 43          # every class about a tenth


def test_training_is_deterministic(digits):
    a, b = train_mlp(digits, seed=3, epochs=4), train_mlp(digits, seed=3, epochs=4)
    other = train_mlp(digits, seed=4, epochs=4)
    assert a.widths == (64, 128, 64, 10)
    for wa, wb, wo in zip(a.weights + a.biases, b.weights + b.biases, other.weights + other.biases):
        assert wa.dtype == np.float32
        np.testing.assert_array_equal(wa.view(np.uint32), wb.view(np.uint32))
    assert any(not np.array_equal(wa, wo) for wa, wo in zip(a.weights, other.weights))
    with pytest.raises(ValueError, match="epochs"):
        train_mlp(digits, epochs=0)


def test_fp32_network_learns(trained, digits):
    logits = forward_fp32(trained, digits.x_test)
    assert logits.dtype == np.float32 and logits.shape == (450, 10)
    assert np.mean(logits.argmax(1) == digits.y_test) >= 0.95
    assert trained.train_accuracy >= 0.98


def test_layers_of_a_recipe():
    layers = layers_for((64, 128, 64, 10), RECIPES["fp8xfp4"])
    assert [la.n for la in layers] == [128, 64, 10]
    assert all(la.fmt_w.name == "E2M1" for la in layers)
    assert [la.activation for la in layers] == ["relu", "relu", None]
    assert [la.out_fmt and la.out_fmt.name for la in layers] == ["E4M3", "E4M3", None]


def test_golden_run_is_bit_exact_in_batches(trained):
    """40 samples in batches of 16 (three programs, the last one shorter), both recipes: the
    logits equal the numpy chain bit for bit; the counters add up over the batches."""
    progress = []

    class Reporting(GoldenBackend):   # reports half way through every run, as the rtl one can
        def run(self, program):
            self.progress(len(program) // 2, len(program))
            return super().run(program)

    def make(name, config, *, hbm_bytes, seed=0, progress=None):
        backend = Reporting(config, hbm_bytes=hbm_bytes, seed=seed)
        backend.progress = progress
        return backend
    report = run_mlp("small", samples=40, batch=16, mlp=trained, make=make,
                     progress=lambda d, t, s: progress.append((d, t)))
    assert report["passed"] and report["samples"] == 40
    assert [d for d, _ in progress] == pytest.approx([i / 2 for i in range(1, 13)], abs=0.02)
    assert {t for _, t in progress} == {6}
    for run in report["runs"]:
        assert run["bit_exact"] and run["state"] == "HALTED" and run["batches"] == 3
        assert run["macs"] == 40 * (128 * 64 + 64 * 128 + 10 * 64)   # K whole blocks
        assert run["counters"]["macs"] == run["macs"]
        # stores: X1 (E4M3 codes + 4 scales a row), X2 (64 codes + 2 scales), FP32 logits
        assert run["bytes_out"] == 40 * (128 + 4 + 64 + 2 + 4 * 10)
        assert run["program_bytes"] == {"read": run["bytes_in"], "written": run["bytes_out"]}
        assert run["cycles"] is None and run["mac_utilization"] is None
        assert set(run["plans"]) == {"16", "8"}


def test_reference_chain_matches_the_float_network_roughly(trained, digits):
    """The MX chain's logits are close to the FP32 ones (an independent sanity check of the
    reference: a wrong weight layout or a missing ReLU would not be)."""
    recipe = RECIPES["fp8"]
    x = digits.x_test[:64]
    x_q = quantize_mx(x, recipe.fmt_act, axis=1)
    got = reference_logits(x_q, quantize_weights(trained, recipe), layers_for(trained, recipe))
    want = forward_fp32(trained, x)
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.95


class _NoReluTvp(GoldenBackend):
    """Fault twin: a vector processor that skips RELU (the result is left as it is)."""

    def _execute(self, cmd):
        if isinstance(cmd, TvpCmd) and cmd.op == TvpOp.RELU:
            cmd = dataclasses.replace(cmd, op=TvpOp.SCALE, scalar=1.0)
        return super()._execute(cmd)


def test_a_faulty_vector_processor_is_caught(trained):
    def make(name, config, *, hbm_bytes, seed=0, progress=None):
        return _NoReluTvp(config, hbm_bytes=hbm_bytes, seed=seed)
    report = run_mlp("small", samples=12, recipes=["fp8"], mlp=trained, make=make)
    assert not report["passed"] and not report["runs"][0]["bit_exact"]
    assert report["runs"][0]["state"] == "HALTED"     # it ran; the logits are wrong


def test_mx_accuracy_against_fp32(trained):
    """All 450 test samples (the default configuration: few, large tile ops): MXFP8 within a
    point and a half of FP32, MXFP8 x MXFP4 within three; logits bit-exact."""
    report = run_mlp("default", mlp=trained)
    assert report["passed"] and report["samples"] == 450
    fp32 = report["fp32"]["accuracy"]
    acc = {r["recipe"]: r["accuracy"] for r in report["runs"]}
    print(f"FP32 {fp32:.4f}, " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    assert fp32 >= 0.95
    assert abs(acc["fp8"] - fp32) <= 0.015
    assert abs(acc["fp8xfp4"] - fp32) <= 0.03


def test_bad_arguments(trained):
    with pytest.raises(ValueError, match="samples"):
        run_mlp("small", samples=451, mlp=trained)
    with pytest.raises(ValueError, match="batch"):
        run_mlp("small", samples=4, batch=0, mlp=trained)
    with pytest.raises(ValueError, match="recipes"):
        run_mlp("small", recipes=["fp16"], mlp=trained)
    with pytest.raises(ValueError, match="not built"):
        run_mlp(get_config("small").replace(formats={"e2m1"}), samples=4, mlp=trained)


def test_cli_json(capsys):
    assert main(["run", "mlp-digits", "--samples", "24", "--recipe", "fp8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["backend"] == "golden" and report["config"] == "small"
    assert [r["recipe"] for r in report["runs"]] == ["fp8"]
    assert report["runs"][0]["a_fmt"] == "E4M3" and report["runs"][0]["bit_exact"]


def test_cli_backend_goes_through_make_backend(monkeypatch, capsys, trained):
    """``--backend rtl`` asks ``make_backend`` for "rtl" (only make_backend changes when the rtl
    backend lands)."""
    asked = []

    class Closing(GoldenBackend):
        def close(self):
            asked.append("closed")

    def fake(name, config, *, hbm_bytes, seed=0, progress=None):
        asked.append(name)
        return Closing(config, hbm_bytes=hbm_bytes, seed=seed)
    monkeypatch.setattr("openmaia.sdk.run.make_backend", fake)
    monkeypatch.setattr(mlp_mod, "train_mlp", lambda data, seed=0: trained)
    assert main(["run", "mlp-digits", "--samples", "8", "--recipe", "fp8xfp4",
                 "--backend", "rtl"]) == 0
    assert asked == ["rtl", "closed"]
    out = capsys.readouterr().out
    assert "bit-exact" in out and "fp8xfp4" in out
