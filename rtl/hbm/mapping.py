"""Address mappings of the HBM model: one table each, read both by Python and by the RTL.

An address here is a byte address inside one pseudo-channel (each pseudo-channel has its own AXI
port, so the ``Ch`` field of the names has zero width inside the controller; a system that
interleaves pseudo-channels places those bits in its interconnect). Bits 4..0 are the byte in a
32 B burst. Every bit above is one bit of a DRAM field, listed from bit 5 upward in
:data:`MAPPINGS`; ``xor`` then flips a field bit with a row bit (a bijection: the row is taken
unchanged). Both mappings keep an aligned 64 B line in one row (bit 5 is column bit 0), so a
64 B request needs at most one activate.

``RoBaRaCoCh`` (row : bank : bank group : stack ID : column, Ramulator's linear order)::

    bit  28..15   14..13  12..11  10    9..5      4..0
         row      ba      bg      sid   col[4:0]  byte

``MOP4CLXOR`` (in the style of Ramulator's MOP4CLXOR: four consecutive 32 B bursts = 128 B stay
in one row, then the bank group changes, then the stack ID and bank; bank group and bank are
XORed with the low row bits to spread row conflicts)::

    bit  28..15   14..12    11..10  9     8..7    6..5      4..0
         row      col[4:2]  ba      sid   bg      col[1:0]  byte
    bg ^= row[1:0], ba ^= row[3:2]
"""

from amaranth.hdl import Cat

from .timing import ORGANISATION, HbmOrganisation

__all__ = ["MAPPINGS", "FIELDS", "map_address", "unmap_address", "map_address_rtl",
           "check_mapping"]

FIELDS = ("sid", "bg", "ba", "row", "col")
OFFSET_BITS = 5


def _layout(*parts):
    bits = []
    for name, lo, hi in parts:
        bits.extend((name, i) for i in range(lo, hi))
    return tuple(bits)


#: name -> {"bits": ((field, field bit), ...) from address bit 5 upward, "xor": ((field, bit,
#: row bit), ...)}
MAPPINGS = {
    "RoBaRaCoCh": {
        "bits": _layout(("col", 0, 5), ("sid", 0, 1), ("bg", 0, 2), ("ba", 0, 2),
                        ("row", 0, 14)),
        "xor": (),
    },
    "MOP4CLXOR": {
        "bits": _layout(("col", 0, 2), ("bg", 0, 2), ("sid", 0, 1), ("ba", 0, 2), ("col", 2, 5),
                        ("row", 0, 14)),
        "xor": (("bg", 0, 0), ("bg", 1, 1), ("ba", 0, 2), ("ba", 1, 3)),
    },
}


def check_mapping(name: str, organisation: HbmOrganisation = ORGANISATION) -> dict:
    """The table of mapping ``name``, checked against the organisation."""
    if name not in MAPPINGS:
        raise ValueError(f"unknown HBM address mapping {name!r}; known: {', '.join(MAPPINGS)}")
    table = MAPPINGS[name]
    for field in FIELDS:
        got = sorted(i for f, i in table["bits"] if f == field)
        if got != list(range(organisation.bits(field))):
            raise ValueError(f"mapping {name}: field {field} has bits {got}, organisation needs "
                             f"{organisation.bits(field)}")
    return table


def map_address(name: str, addr: int, organisation: HbmOrganisation = ORGANISATION) -> dict:
    """``{"sid", "bg", "ba", "row", "col"}`` of byte address ``addr`` (Python reference)."""
    table = check_mapping(name, organisation)
    out = dict.fromkeys(FIELDS, 0)
    for k, (field, bit) in enumerate(table["bits"]):
        out[field] |= ((addr >> (OFFSET_BITS + k)) & 1) << bit
    for field, bit, row_bit in table["xor"]:
        out[field] ^= ((out["row"] >> row_bit) & 1) << bit
    return out


def unmap_address(name: str, *, sid=0, bg=0, ba=0, row=0, col=0, byte=0,
                  organisation: HbmOrganisation = ORGANISATION) -> int:
    """The byte address that :func:`map_address` sends to these fields (its inverse)."""
    table = check_mapping(name, organisation)
    fields = {"sid": sid, "bg": bg, "ba": ba, "row": row, "col": col}
    for field, bit, row_bit in table["xor"]:
        fields[field] ^= ((row >> row_bit) & 1) << bit
    addr = byte
    for k, (field, bit) in enumerate(table["bits"]):
        addr |= ((fields[field] >> bit) & 1) << (OFFSET_BITS + k)
    return addr


def map_address_rtl(name: str, addr, organisation: HbmOrganisation = ORGANISATION) -> dict:
    """The same mapping as Amaranth values of ``addr`` (wires only: slices and XORs)."""
    table = check_mapping(name, organisation)
    parts = {f: [None] * organisation.bits(f) for f in FIELDS}
    for k, (field, bit) in enumerate(table["bits"]):
        parts[field][bit] = addr[OFFSET_BITS + k]
    for field, bit, row_bit in table["xor"]:
        parts[field][bit] = parts[field][bit] ^ parts["row"][row_bit]
    return {f: Cat(*parts[f]) for f in FIELDS}
