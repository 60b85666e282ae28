"""HBM3 timing presets and pseudo-channel organisation (all timing in tCK, one model cycle each).

``HBM3_6400`` is the table of ../shared/brief/hbm3.md (Ramulator 2.1's HBM3_6400 preset,
tCK = 0.625 ns). ``HBM3E_9600`` is **not** a vendor table: it is HBM3_6400 scaled to a 9.6 Gb/s
pin rate (tCK = 0.4167 ns): every parameter that is a fixed time in nanoseconds (CL, CWL, tRCD,
tRP, tRAS, tRC, tWR, tRTP, tRTW, tRRD, tFAW, tWTR, tREFI, tRFC) is multiplied by 1.5 and rounded
up to whole cycles; the burst-bound parameters (tBURST, tCCD_S, tCCD_L, tCCD_R) stay in cycles.

Data bus: a pseudo-channel moves 4 bits a pin a tCK (25.6 GB/s x 0.625 ns = 16 B a tCK on 32
bits), so a BL8 burst (32 B) occupies the data bus ``tBURST = 2`` tCK, which equals tCCD_S: the
column-to-column spacing limits the data bus, and back-to-back bursts to different bank groups
reach peak. Peak is therefore 16 B a cycle per pseudo-channel.
"""

import math
from dataclasses import dataclass, fields, replace

__all__ = ["HbmTiming", "HbmOrganisation", "HBM3_6400", "HBM3E_9600", "TIMING_PRESETS",
           "ORGANISATION", "get_timing"]


@dataclass(frozen=True, kw_only=True)
class HbmTiming:
    """One timing preset; every value in tCK (model cycles)."""
    name: str
    tck_ns: float
    CL: int
    CWL: int
    tRCD_RD: int
    tRCD_WR: int
    tRP: int
    tRAS: int
    tRC: int
    tWR: int
    tRTP: int
    tRTW: int
    tCCD_S: int
    tCCD_L: int
    tCCD_R: int
    tRRD_S: int
    tRRD_L: int
    tFAW: int
    tWTR_S: int
    tWTR_L: int
    tREFI: int
    tRFC: int
    tBURST: int = 2

    def __post_init__(self):
        for f in fields(self):
            if f.name in ("name", "tck_ns"):
                continue
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name} must be a positive integer, not {value!r}")
        if self.tCCD_S < self.tBURST:
            raise ValueError("tCCD_S must cover a burst on the data bus (tCCD_S >= tBURST)")

    @property
    def write_to_precharge(self) -> int:
        """WR -> PRE, same bank: write latency + burst + write recovery (CWL + tBURST + tWR)."""
        return self.CWL + self.tBURST + self.tWR

    @property
    def write_to_read_s(self) -> int:
        """WR -> RD, other bank group: CWL + tBURST + tWTR_S."""
        return self.CWL + self.tBURST + self.tWTR_S

    @property
    def write_to_read_l(self) -> int:
        """WR -> RD, same bank group: CWL + tBURST + tWTR_L."""
        return self.CWL + self.tBURST + self.tWTR_L

    def values(self) -> dict:
        """Every parameter as plain data (what the testbench's checker receives)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class HbmOrganisation:
    """One pseudo-channel: ``stack_ids`` x ``bank_groups`` x ``banks`` banks of ``rows`` rows of
    ``row_bytes``; ``burst_bytes`` a column command (BL8 on 32 bits)."""
    stack_ids: int = 2
    bank_groups: int = 4
    banks: int = 4
    rows: int = 16384
    row_bytes: int = 1024
    burst_bytes: int = 32
    line_bytes: int = 64

    @property
    def total_banks(self) -> int:
        return self.stack_ids * self.bank_groups * self.banks

    @property
    def columns(self) -> int:
        """Column (burst) addresses a row."""
        return self.row_bytes // self.burst_bytes

    @property
    def bytes(self) -> int:
        return self.total_banks * self.rows * self.row_bytes

    @property
    def address_bits(self) -> int:
        return (self.bytes - 1).bit_length()

    def bits(self, name) -> int:
        count = {"sid": self.stack_ids, "bg": self.bank_groups, "ba": self.banks,
                 "row": self.rows, "col": self.columns}[name]
        return (count - 1).bit_length()


#: 2 stack IDs x 4 bank groups x 4 banks, 1 KB rows (Ramulator 2.1 HBM3_8Gb_8hi), 16 Ki rows:
#: 512 MiB a pseudo-channel.
ORGANISATION = HbmOrganisation()

HBM3_6400 = HbmTiming(
    name="HBM3_6400", tck_ns=0.625, CL=20, CWL=10, tRCD_RD=31, tRCD_WR=15, tRP=26, tRAS=45,
    tRC=72, tWR=33, tRTP=9, tRTW=20, tCCD_S=2, tCCD_L=4, tCCD_R=3, tRRD_S=4, tRRD_L=5, tFAW=24,
    tWTR_S=7, tWTR_L=10, tREFI=6240, tRFC=416)

_TIME_BOUND = ("CL", "CWL", "tRCD_RD", "tRCD_WR", "tRP", "tRAS", "tRC", "tWR", "tRTP", "tRTW",
               "tRRD_S", "tRRD_L", "tFAW", "tWTR_S", "tWTR_L", "tREFI", "tRFC")


def _scaled(base: HbmTiming, name: str, gbps: float) -> HbmTiming:
    factor = gbps / 6.4
    changes = {key: math.ceil(getattr(base, key) * factor - 1e-9) for key in _TIME_BOUND}
    return replace(base, name=name, tck_ns=base.tck_ns / factor, **changes)


#: HBM3_6400 scaled to 9.6 Gb/s a pin (a derived preset, not a JEDEC or vendor table).
HBM3E_9600 = _scaled(HBM3_6400, "HBM3E_9600", 9.6)

TIMING_PRESETS = {t.name: t for t in (HBM3_6400, HBM3E_9600)}


def get_timing(name: "str | HbmTiming") -> HbmTiming:
    if isinstance(name, HbmTiming):
        return name
    try:
        return TIMING_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown HBM timing preset {name!r}; known: "
                         f"{', '.join(TIMING_PRESETS)}") from None
