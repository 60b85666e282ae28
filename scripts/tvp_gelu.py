"""The TVP's GELU: refit its coefficient table, and measure its error exhaustively.

``python scripts/tvp_gelu.py fit`` refits ``GELU_TABLE`` (openmaia.numerics.vector) the way it
was made (cubic pieces of ``Q(a) = Phi(-a)`` on ``[k/8, (k+1)/8)``, least squares of the relative
error on 400 Chebyshev nodes, ``c0`` of piece 0 fixed to 0.5, then rounded to FP32) and prints
it with the entries that differ from the frozen table (a different LAPACK may move a last bit;
the frozen table is the definition).

``python scripts/tvp_gelu.py error [--limit L] [--chunk-bits B]`` evaluates the GELU of every
FP32 value ``x`` with ``|x| < L`` (default 8: beyond it the result is ``x`` or -0) and
compares it with ``x * Phi(x)`` in float64 (``Phi(x) = erfc(-x / sqrt(2)) / 2``: the erf form,
written with erfc so the negative tail keeps its relative precision). The sequence of FP32
operations runs on numpy float32 (IEEE binary32, nearest even, no flush to zero), which is
checked bit for bit against the integer golden model on a sample first. Prints the largest
absolute error, the largest relative error for ``x >= 0``, for ``-4 <= x < 0`` and for
``-8 < x < -4``, the largest error in units in the last place of the reference (``x >= 0``),
and where each occurs.
"""

import argparse
import time

import numpy as np
from scipy.special import erfc, ndtr

from openmaia.numerics import CANONICAL_NAN
from openmaia.numerics import vector as v


def fit():
    steps, deg = v.GELU_STEPS, 3
    h = 1.0 / steps
    nodes = 0.5 * h * (1 - np.cos(np.pi * (np.arange(400) + 0.5) / 400))
    rows = []
    for k in range(v.GELU_SEGMENTS):
        q = ndtr(-(k * h + nodes))
        w = 1 / q
        if k == 0:
            a = np.stack([nodes ** j for j in range(1, deg + 1)], 1)
            c = np.concatenate([[0.5], np.linalg.lstsq(a * w[:, None], (q - 0.5) * w,
                                                       rcond=None)[0]])
        else:
            a = np.stack([nodes ** j for j in range(deg + 1)], 1)
            c = np.linalg.lstsq(a * w[:, None], q * w, rcond=None)[0]
        rows.append(c.astype(np.float32).view(np.uint32))
    table = np.array(rows)
    for k, row in enumerate(table):
        print("    (" + ", ".join(f"0x{int(c):08X}" for c in row) + f"),  # [{k}/8, {k + 1}/8)")
    diff = np.argwhere(table != v.GELU_TABLE[:-1])
    print(f"{len(diff)} entries differ from the frozen GELU_TABLE: {diff.tolist()[:10]}")


def gelu_f32(xb: np.ndarray) -> np.ndarray:
    """The same sequence as ``vector.gelu`` in numpy float32 (for speed); bits out."""
    x = xb.view(np.float32)
    k, x0 = v.gelu_segment(xb)
    c = v.GELU_TABLE[k].view(np.float32)
    a = np.abs(x)
    with np.errstate(invalid="ignore"):
        t = np.where(k == v.GELU_SEGMENTS, np.float32(0),
                     a - x0.astype(np.uint32).view(np.float32))
    q = c[:, 3] * t
    q = q + c[:, 2]
    q = q * t
    q = q + c[:, 1]
    q = q * t
    q = q + c[:, 0]
    p = np.where(np.signbit(x), q + np.float32(-0.0), np.float32(1) - q)
    with np.errstate(invalid="ignore"):
        y = (x * p).view(np.uint32)
    y = np.where(xb == 0xFF800000, np.uint32(0x80000000), y)
    return np.where((y & 0x7FFFFFFF) > 0x7F800000, np.uint32(CANONICAL_NAN), y)


def error(limit: float, chunk_bits: int):
    rng = np.random.default_rng(1)
    sample = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    assert np.array_equal(gelu_f32(sample), v.gelu(sample)), "float32 path != golden model"
    top = int(np.float32(limit).view(np.uint32))
    best = {}

    def keep(name, values, xs):
        if values.size == 0:
            return
        i = int(np.argmax(values))
        if values[i] > best.get(name, (-1.0, 0))[0]:
            best[name] = (float(values[i]), float(xs[i]))

    start = time.time()
    step = 1 << chunk_bits
    for sign in (0, 0x80000000):
        for lo in range(0, top, step):
            mag = np.arange(lo, min(lo + step, top), dtype=np.uint32)
            xb = mag | np.uint32(sign)
            y = gelu_f32(xb).view(np.float32).astype(np.float64)
            x = xb.view(np.float32).astype(np.float64)
            ref = 0.5 * x * erfc(-x / np.sqrt(2))
            err = np.abs(y - ref)
            keep("abs", err, x)
            nz = ref != 0
            rel = err[nz] / np.abs(ref[nz])
            xs = x[nz]
            if sign == 0:
                keep("rel x>=0", rel, xs)
                ulp = np.spacing(np.abs(ref[nz]).astype(np.float32)).astype(np.float64)
                keep("ulp x>=0", err[nz] / ulp, xs)
            else:
                keep("rel -4<=x<0", rel[xs >= -4], xs[xs >= -4])
                keep("rel -8<x<-4", rel[xs < -4], xs[xs < -4])
        print(f"sign {sign >> 31}: done at {time.time() - start:.0f} s", flush=True)
    print(f"GELU error over every FP32 x with |x| < {limit} ({2 * top:,} values):")
    for name, (value, x) in best.items():
        print(f"  max {name:12s} {value:.3e}  at x = {x!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fit")
    e = sub.add_parser("error")
    e.add_argument("--limit", type=float, default=float(v.GELU_TOP))
    e.add_argument("--chunk-bits", type=int, default=22)
    args = parser.parse_args()
    if args.command == "fit":
        fit()
    else:
        error(args.limit, args.chunk_bits)


if __name__ == "__main__":
    main()
