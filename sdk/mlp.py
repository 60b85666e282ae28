"""The MLP digits demo: what ``openmaia run mlp-digits`` does (docs/sdk.md).

A 64-128-64-10 ReLU perceptron is trained on scikit-learn's bundled 8 x 8 digits (no download;
fixed stratified split, fixed seed, a few seconds), then run, MX-quantized, on a tile backend:

* **weights** ``W{i}`` (K x N) are quantized with ``quantize_mx`` along K (host, offline), the
  biases stay FP32;
* **activations**: the host quantizes the input (the first layer's A) with ``quantize_mx`` along
  K; every layer's bias add, ReLU and re-quantization to the next layer's A (``QUANT_MX``) run on
  the tile's vector processor; the last layer stores FP32 logits. The host touches only the
  inputs and the logits: the whole network is one program from :func:`compile_layers`;
* a **recipe** names the activation and weight formats (:data:`RECIPES`): ``fp8`` is
  E4M3 x E4M3, ``fp8xfp4`` E4M3 activations x E2M1 weights.

The logits are compared bit for bit with an independent numpy chain (:func:`reference_logits`:
``mx_matmul`` -> ``vector.bias_add`` -> ``vector.relu`` -> ``quantize_mx`` per layer), and the
accuracy of each recipe is set against the FP32 (numpy float32) forward pass.
"""

import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..config import get_config
from ..numerics import Format, mx_matmul, quantize_mx, vector
from .backend import run_compiled
from .compiler import Layer, compile_layers
from .report import dma_bytes

__all__ = [
    "HIDDEN",
    "RECIPES",
    "Digits",
    "Mlp",
    "Recipe",
    "forward_fp32",
    "layers_for",
    "load_digits_split",
    "quantize_weights",
    "reference_logits",
    "run_mlp",
    "train_mlp",
]

#: Hidden layer widths (input 64 = 8 x 8 pixels, output 10 classes).
HIDDEN = (128, 64)
#: The fixed train / test split: a quarter of the 1,797 digits (450) for test, stratified.
SPLIT_SEED = 0
TEST_FRACTION = 0.25
#: Training schedule (Adam, scikit-learn's MLPClassifier): a few seconds on one core.
EPOCHS = 40
BATCH = 64
LEARNING_RATE = 2e-3


@dataclass(frozen=True)
class Recipe:
    """An MX recipe: activations (every layer's A) in ``fmt_act``, weights in ``fmt_w``."""
    name: str
    fmt_act: Format
    fmt_w: Format

    @property
    def description(self) -> str:
        return f"{self.fmt_act.name} activations x {self.fmt_w.name} weights"


RECIPES = {
    "fp8": Recipe("fp8", Format.E4M3, Format.E4M3),
    "fp8xfp4": Recipe("fp8xfp4", Format.E4M3, Format.E2M1),
}


@dataclass(frozen=True)
class Digits:
    """The split: ``x_*`` float32 pixels scaled to [0, 1] (N x 64), ``y_*`` labels 0..9."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Mlp:
    """A trained network: per layer ``weights[i]`` (K_i x N_i) and ``biases[i]`` (N_i), float32;
    ReLU after every layer but the last."""
    weights: tuple
    biases: tuple
    seed: int
    epochs: int
    train_accuracy: float

    @property
    def widths(self) -> tuple:
        return (self.weights[0].shape[0],) + tuple(w.shape[1] for w in self.weights)


def load_digits_split() -> Digits:
    """The bundled digits, pixels / 16, split as :data:`SPLIT_SEED` / :data:`TEST_FRACTION`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, data.target, test_size=TEST_FRACTION,
                                              random_state=SPLIT_SEED, stratify=data.target)
    return Digits(x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64))


def train_mlp(data: Digits, *, seed: int = 0, epochs: int = EPOCHS) -> Mlp:
    """Train the 64-128-64-10 ReLU network (scikit-learn ``MLPClassifier``, Adam, mini-batches of
    :data:`BATCH`, ``epochs`` passes, initialisation and shuffling from ``seed``, one BLAS
    thread). The same seed gives the same weights."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, not {epochs!r}")
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", solver="adam",
                        batch_size=BATCH, learning_rate_init=LEARNING_RATE, max_iter=epochs,
                        random_state=seed)
    # one BLAS thread: small matrices, a shared machine (threads contend), one summation order
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(data.x_train, data.y_train)
    if list(clf.classes_) != list(range(10)):
        raise ValueError("the training labels must be the digits 0..9")
    weights = tuple(np.asarray(w, np.float32) for w in clf.coefs_)
    biases = tuple(np.asarray(b, np.float32) for b in clf.intercepts_)
    mlp = Mlp(weights, biases, seed, epochs, 0.0)
    acc = float(np.mean(forward_fp32(mlp, data.x_train).argmax(1) == data.y_train))
    return Mlp(weights, biases, seed, epochs, acc)


def forward_fp32(mlp: Mlp, x) -> np.ndarray:
    """Logits of the FP32 network (numpy float32 all the way)."""
    a = np.asarray(x, np.float32)
    for i, (w, b) in enumerate(zip(mlp.weights, mlp.biases)):
        a = (a @ w + b).astype(np.float32)
        if i < len(mlp.weights) - 1:
            a = np.maximum(a, np.float32(0))
    return a


def layers_for(widths, recipe: Recipe) -> list:
    """The :class:`Layer` list of a network of ``widths`` (input, hidden..., output; or an
    :class:`Mlp`) under ``recipe``: ReLU and re-quantization to ``fmt_act`` after every layer
    but the last, which stores FP32."""
    widths = widths.widths if isinstance(widths, Mlp) else tuple(widths)
    last = len(widths) - 2
    return [Layer(n=n, fmt_w=recipe.fmt_w, bias=True,
                  activation=None if i == last else "relu",
                  out_fmt=None if i == last else recipe.fmt_act)
            for i, n in enumerate(widths[1:])]


def quantize_weights(mlp: Mlp, recipe: Recipe) -> dict:
    """The parameter tensors: ``W{i}`` quantized along K (axis 0), ``bias{i}`` (1 x N FP32)."""
    tensors = {}
    for i, (w, b) in enumerate(zip(mlp.weights, mlp.biases)):
        tensors[f"W{i}"] = quantize_mx(w, recipe.fmt_w, axis=0)
        tensors[f"bias{i}"] = b.reshape(1, -1)
    return tensors


def reference_logits(x_q, tensors: dict, layers) -> np.ndarray:
    """The independent chain: per layer ``mx_matmul`` -> ``vector.bias_add`` -> ``vector.relu``
    -> ``quantize_mx`` along K (the next layer's A). Returns the last layer's FP32 output."""
    a, c = x_q, None
    for i, layer in enumerate(layers):
        c = mx_matmul(a, tensors[f"W{i}"]).view(np.uint32)
        if layer.bias:
            c = vector.bias_add(c, np.asarray(tensors[f"bias{i}"], np.float32).view(np.uint32))
        if layer.activation == "relu":
            c = vector.relu(c)
        elif layer.activation is not None:
            raise ValueError(f"reference chain: activation {layer.activation!r} not used here")
        if layer.out_fmt is not None:
            a = quantize_mx(np.asarray(c, np.uint32).view(np.float32), layer.out_fmt, axis=1)
    return np.asarray(c, np.uint32).view(np.float32)


def _add_counters(total: dict, counters: dict) -> None:
    for key, value in counters.items():
        if isinstance(value, bool) or value is None:
            total.setdefault(key, value)
        elif isinstance(value, (int, float)):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, list):
            total[key] = total.get(key, []) + list(value)
        else:
            total[key] = value


def run_mlp(config="small", *, backend: str = "golden", recipes=("fp8", "fp8xfp4"),
            samples: int | None = None, seed: int = 0, batch: int | None = None,
            progress=None, make=None, mlp: Mlp | None = None) -> dict:
    """Train, quantize, compile and run the digits MLP (module docstring) on ``backend``; check
    the logits bit-exact; return the report (plain data, JSON-ready; docs/sdk.md).

    ``samples``: the first N test samples (default all 450); ``batch``: samples per program
    (default all in one); ``progress(done, total, text)``: called after every batch run (and,
    with a fractional ``done``, as far as the backend reports inside one); ``make``: the backend
    factory (default :func:`openmaia.sdk.run.make_backend`; called with ``hbm_bytes``, ``seed``
    and ``progress``; a backend with ``close()`` is closed at the end); ``mlp``: a trained
    network (default: :func:`train_mlp` with ``seed``)."""
    from .run import close_backend, make_backend, program_dma_bytes
    make = make_backend if make is None else make
    config = get_config(config)
    unknown = [r for r in recipes if not isinstance(r, Recipe) and r not in RECIPES]
    if unknown or not recipes:
        raise ValueError(f"recipes: one or more of {', '.join(RECIPES)}, not {unknown!r}")
    recipes = [r if isinstance(r, Recipe) else RECIPES[r] for r in recipes]
    data = load_digits_split()
    total = len(data.y_test)
    samples = total if samples is None else samples
    if not isinstance(samples, int) or not 1 <= samples <= total:
        raise ValueError(f"samples must be in 1 .. {total}, not {samples!r}")
    batch = samples if batch is None else batch
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, not {batch!r}")
    widths = (data.x_test.shape[1],) + HIDDEN + (10,) if mlp is None else mlp.widths
    # compile and make the backend first: a refused backend or shape fails before training
    bounds = [(m0, min(samples, m0 + batch)) for m0 in range(0, samples, batch)]
    plan = []      # (recipe, layers, {m: compiled})
    for recipe in recipes:
        layers = layers_for(widths, recipe)
        programs = {}
        for m0, m1 in bounds:
            if m1 - m0 not in programs:
                programs[m1 - m0] = compile_layers(config, m=m1 - m0, k=widths[0],
                                                   fmt_in=recipe.fmt_act, layers=layers)
        plan.append((recipe, layers, programs))
    hbm_bytes = max(c.hbm_bytes for *_, programs in plan for c in programs.values())
    steps, position = len(recipes) * len(bounds), {"done": 0, "text": "train"}

    def within(retired, commands):      # the backend's progress inside one program
        if progress is not None and commands:
            progress(position["done"] + retired / commands, steps, position["text"])
    device = make(backend, config, hbm_bytes=hbm_bytes, seed=seed, progress=within)
    try:
        start = time.monotonic()
        mlp = train_mlp(data, seed=seed) if mlp is None else mlp
        train_seconds = time.monotonic() - start
        x, y = data.x_test[:samples], data.y_test[:samples]
        fp32 = forward_fp32(mlp, x)

        runs = []
        run_start = time.monotonic()
        for recipe, layers, programs in plan:
            tensors = quantize_weights(mlp, recipe)
            logits = np.zeros((samples, fp32.shape[1]), np.float32)
            exact, states, errors, counters, commands = True, [], [], {}, {}
            program_bytes = {"read": 0, "written": 0}
            for m0, m1 in bounds:
                position["text"] = f"{recipe.name} samples {m0}..{m1 - 1}"
                compiled = programs[m1 - m0]
                x_q = quantize_mx(x[m0:m1], recipe.fmt_act, axis=1)
                device.reset()
                result, out = run_compiled(device, compiled, {"X": x_q, **tensors})
                logits[m0:m1] = out["Y"]
                want = reference_logits(x_q, tensors, layers)
                exact &= bool(result.ok and np.array_equal(out["Y"].view(np.uint32),
                                                           want.view(np.uint32)))
                states.append(result.state)
                errors.append(result.error.name)
                _add_counters(counters, result.counters)
                for kind, n in compiled.program.counts().items():
                    commands[kind] = commands.get(kind, 0) + n
                _add_counters(program_bytes, program_dma_bytes(compiled.program))
                position["done"] += 1
                if progress is not None:
                    progress(position["done"], steps, position["text"])
            runs.append(_run_record(config, recipe, layers, logits, y, exact, states, errors,
                                    counters, commands, len(bounds), programs))
            runs[-1]["program_bytes"] = program_bytes
        fp32_acc = float(np.mean(fp32.argmax(1) == y))
        for r in runs:
            r["accuracy_vs_fp32"] = r["accuracy"] - fp32_acc
        return {
            "workload": "mlp-digits", "config": config.name, "backend": backend, "seed": seed,
            "samples": samples, "batch": batch, "network": list(mlp.widths),
            "train": {"samples": len(data.y_train), "epochs": mlp.epochs,
                      "accuracy": mlp.train_accuracy, "seconds": round(train_seconds, 2)},
            "fp32": {"accuracy": fp32_acc},
            "runs": runs,
            "run_seconds": round(time.monotonic() - run_start, 2),
            "passed": all(r["bit_exact"] for r in runs),
        }
    finally:
        close_backend(device)


def _run_record(config, recipe, layers, logits, y, exact, states, errors, counters, commands,
                batches, programs):
    macs = counters.get("macs", 0)
    bytes_in, bytes_out = dma_bytes(counters)
    moved = bytes_in + bytes_out
    cycles = counters.get("cycles")
    peak = config.macs_per_cycle(recipe.fmt_act, recipe.fmt_w)
    state = next((s for s in states if s != "HALTED"), "HALTED")
    error = next((e for e in errors if e != "OK"), "OK")
    return {
        "recipe": recipe.name, "description": recipe.description,
        "a_fmt": recipe.fmt_act.name, "b_fmt": recipe.fmt_w.name,
        "layers": [{"n": la.n, "fmt_w": la.fmt_w.name, "activation": la.activation,
                    "out_fmt": la.out_fmt.name if la.out_fmt else None} for la in layers],
        "accuracy": float(np.mean(logits.argmax(1) == y)),
        "bit_exact": exact, "state": state, "error": error, "batches": batches,
        "plans": {str(m): [[p.mc, p.nc] for p in c.plans] for m, c in programs.items()},
        "commands": commands, "macs": macs, "bytes_in": bytes_in, "bytes_out": bytes_out,
        "arithmetic_intensity": macs / moved if moved else None,
        "cycles": cycles,
        "mac_utilization": macs / (peak * cycles) if cycles else None,
        "counters": counters,
    }
