"""The element formats of OCP OFP8 and OCP Microscaling (MX) v1.0, and the E8M0 block scale.

Every other part of OpenMaia (golden model, RTL, layout, SDK) takes its format parameters from
here. A format is named by :class:`Format`; its fixed parameters are in :attr:`Format.spec`.
"""

import enum
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Format", "FormatSpec", "E8M0_NAN", "E8M0_BIAS", "BLOCK_SIZE", "block_sum_bits"]

#: Elements per MX block (OCP MX v1.0, k = 32).
BLOCK_SIZE = 32
#: E8M0 scale code c means 2 ** (c - E8M0_BIAS).
E8M0_BIAS = 127
#: The one NaN code of E8M0.
E8M0_NAN = 0xFF


@dataclass(frozen=True)
class FormatSpec:
    """Fixed parameters of one element format.

    ``lsb_exp`` is the exponent of the smallest step of the format (the minimum subnormal, or
    2**-6 for MXINT8): every finite value is an integer multiple of ``2 ** lsb_exp``. ``emax`` is
    the exponent of the largest normal (``emax_elem`` of the MX spec), used by the scale rule.
    ``hw_code`` is the 3-bit code that selects the format at run time in the hardware.
    """
    bits: int
    ebits: int
    mbits: int
    bias: int
    emax: int
    lsb_exp: int
    max_value: Fraction
    has_inf: bool
    has_nan: bool
    hw_code: int
    ml_dtype: str | None

    @property
    def codes(self) -> int:
        """Number of distinct codes."""
        return 1 << self.bits

    @property
    def max_int(self) -> int:
        """Largest magnitude of a finite element in units of ``2 ** lsb_exp`` (INT8: 128)."""
        if self.ebits == 0:
            return 1 << (self.bits - 1)
        return int(self.max_value / Fraction(2) ** self.lsb_exp)

    @property
    def bytes_per_block(self) -> int:
        """Bytes one packed 32-element block occupies in memory (see docs/layout.md)."""
        return BLOCK_SIZE * self.bits // 8


# Fixed hashes for Format members: Enum hashes its name, which Python randomizes per process, so
# iterating a set of formats would order them differently in every process, and the elaborated
# Verilog (and every simulation build cached by its hash) with them.
_FORMAT_HASH = {"e4m3": 0, "e5m2": 1, "e3m2": 2, "e2m3": 3, "e2m1": 4, "int8": 5}


class Format(enum.Enum):
    """An MX element format. ``Format("e4m3")`` and ``Format.E4M3`` name the same format."""
    E4M3 = "e4m3"
    E5M2 = "e5m2"
    E3M2 = "e3m2"
    E2M3 = "e2m3"
    E2M1 = "e2m1"
    INT8 = "int8"

    def __hash__(self):
        return _FORMAT_HASH[self._value_]

    @property
    def spec(self) -> FormatSpec:
        return _SPECS[self]

    @property
    def is_float(self) -> bool:
        return self is not Format.INT8

    @classmethod
    def of(cls, fmt: "Format | str") -> "Format":
        """Coerce a format or its name (case-insensitive, e.g. ``"E4M3"``) to a :class:`Format`."""
        if isinstance(fmt, cls):
            return fmt
        if isinstance(fmt, str):
            try:
                return cls(fmt.lower())
            except ValueError:
                pass
        names = ", ".join(f.value for f in cls)
        raise ValueError(f"unknown element format {fmt!r}; expected one of {names}")

    @classmethod
    def from_hw_code(cls, code: int) -> "Format":
        for fmt in cls:
            if fmt.spec.hw_code == code:
                return fmt
        raise ValueError(f"no element format has hardware code {code}")

    def __str__(self) -> str:
        return self.value


_SPECS = {
    Format.E4M3: FormatSpec(bits=8, ebits=4, mbits=3, bias=7, emax=8, lsb_exp=-9,
                            max_value=Fraction(448), has_inf=False, has_nan=True, hw_code=0,
                            ml_dtype="float8_e4m3fn"),
    Format.E5M2: FormatSpec(bits=8, ebits=5, mbits=2, bias=15, emax=15, lsb_exp=-16,
                            max_value=Fraction(57344), has_inf=True, has_nan=True, hw_code=1,
                            ml_dtype="float8_e5m2"),
    Format.E3M2: FormatSpec(bits=6, ebits=3, mbits=2, bias=3, emax=4, lsb_exp=-4,
                            max_value=Fraction(28), has_inf=False, has_nan=False, hw_code=2,
                            ml_dtype="float6_e3m2fn"),
    Format.E2M3: FormatSpec(bits=6, ebits=2, mbits=3, bias=1, emax=2, lsb_exp=-3,
                            max_value=Fraction(15, 2), has_inf=False, has_nan=False, hw_code=3,
                            ml_dtype="float6_e2m3fn"),
    Format.E2M1: FormatSpec(bits=4, ebits=2, mbits=1, bias=1, emax=2, lsb_exp=-1,
                            max_value=Fraction(6), has_inf=False, has_nan=False, hw_code=4,
                            ml_dtype="float4_e2m1fn"),
    Format.INT8: FormatSpec(bits=8, ebits=0, mbits=7, bias=0, emax=0, lsb_exp=-6,
                            max_value=Fraction(127, 64), has_inf=False, has_nan=False, hw_code=5,
                            ml_dtype=None),
}


def block_sum_bits(fmt_a: "Format | str", fmt_b: "Format | str", block: int = BLOCK_SIZE) -> int:
    """Signed bits that hold any exact sum of ``block`` products of two element formats, in units
    of the product of the two smallest steps (the width table of docs/numerics.md)."""
    fmt_a, fmt_b = Format.of(fmt_a), Format.of(fmt_b)
    return (block * fmt_a.spec.max_int * fmt_b.spec.max_int).bit_length() + 1
