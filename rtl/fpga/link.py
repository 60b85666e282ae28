"""The host link protocol: register and memory access over a byte stream (the boards' UART).

Defined once, here, and imported by the RTL (:mod:`openmaia.fpga.host_bridge`), the cocotb bench
and the SDK's ``fpga`` backend. docs/fpga.md ("Host link") is the prose version.

Frames
------
All multi-byte fields are little-endian. A request is::

    REQ_SYNC  opcode  fields...  [data]

and every request gets exactly one response::

    RSP_SYNC  opcode  length(u16)  payload[length]  status

``opcode`` echoes the request's opcode (or the illegal byte). ``length`` is the number of payload
bytes that follow; it is 0 when the request was rejected before it ran. ``status`` is the last
byte of every response: an :class:`~openmaia.errors.ErrorCode` (``OK``, ``AXI_SLVERR``,
``AXI_DECERR``, ``ILLEGAL_OPCODE``, ``ILLEGAL_FIELD``).

The opcodes, their fields and their payloads are :data:`REQUEST_FIELDS` and
:data:`RESPONSE_PAYLOAD`; :func:`protocol_table` writes them as the table of docs/fpga.md.

Rules
-----
* ``REG_*``: ``addr`` must be a multiple of 4 and below ``2**reg_addr_bits``, otherwise the
  answer is ``ILLEGAL_FIELD`` with no bus access (``REG_READ``: payload length 0).
* ``MEM_*``: ``length`` must be 1..65535 and ``addr + length <= 2**mem_addr_bits``, otherwise
  ``ILLEGAL_FIELD`` with no bus access. A rejected ``MEM_WRITE``'s data bytes are still read and
  discarded, so the frame boundary is never lost.
* A bus error (``SLVERR`` / ``DECERR``) on any beat does not stop the operation: every beat is
  done (``MEM_READ`` sends ``length`` bytes, those of a failed beat are what the bus returned),
  and ``status`` is the code of the first failed beat.
* Undefined opcode: the answer ``RSP_SYNC, op, 0, 0, ILLEGAL_OPCODE`` comes at once; the bridge
  then hunts for ``REQ_SYNC`` (bytes between frames that are not ``REQ_SYNC`` are dropped and
  counted).
* One request at a time: the host sends the next request after the status byte of the previous
  response.

Resynchronisation
-----------------
The host holds its TX line low for at least ``BREAK_BITS`` bit times (a break). The receiver
sees a framing error; the bridge abandons the frame it is receiving or sending (a bus access in
flight completes first; a response stops after at most two more bytes: the one on the wire and
the one already offered to the transmitter), forgets the bytes it buffered, and hunts for
``REQ_SYNC``. The host then waits ``RESYNC_QUIET_BYTES`` byte times,
discards what it received and sends ``PING`` until it gets the PING response.
"""

import enum
import struct
from dataclasses import dataclass

from ..errors import ErrorCode

__all__ = ["Opcode", "REQ_SYNC", "RSP_SYNC", "LINK_MAGIC", "LINK_VERSION", "MAX_LENGTH",
           "REG_VALUE_BYTES", "BREAK_BITS", "RESYNC_QUIET_BYTES", "REQUEST_FIELD_BYTES",
           "RSP_HEADER_BYTES", "BITS_PER_BYTE", "Response", "LinkError",
           "encode_ping", "encode_reg_read", "encode_reg_write", "encode_mem_write",
           "encode_mem_read", "encode_response", "decode_request", "decode_response",
           "response_bytes", "bytes_per_second", "protocol_table", "REQUEST_FIELDS",
           "RESPONSE_PAYLOAD", "PING_PAYLOAD_BYTES"]

REQ_SYNC = 0x5A
RSP_SYNC = 0xA5
#: "OM", the first two payload bytes of a PING response.
LINK_MAGIC = 0x4D4F
LINK_VERSION = 1
#: The longest MEM_WRITE / MEM_READ (the u16 length field).
MAX_LENGTH = 0xFFFF
REG_VALUE_BYTES = 4
#: A break: the line held low this many bit times (two characters) or longer.
BREAK_BITS = 20
#: After a break the host waits this many byte times before it sends PING.
RESYNC_QUIET_BYTES = 4
#: ``RSP_SYNC``, opcode, length (u16).
RSP_HEADER_BYTES = 4
#: Start bit, 8 data bits, stop bit (8N1).
BITS_PER_BYTE = 10
PING_PAYLOAD_BYTES = 4


class Opcode(enum.IntEnum):
    PING = 0x00
    REG_READ = 0x01
    REG_WRITE = 0x02
    MEM_WRITE = 0x03
    MEM_READ = 0x04


#: The fields after the opcode byte, in order: (name, bytes), little-endian unsigned.
#: MEM_WRITE's ``length`` data bytes follow its fields.
REQUEST_FIELDS = {
    Opcode.PING: (),
    Opcode.REG_READ: (("addr", 2),),
    Opcode.REG_WRITE: (("addr", 2), ("value", 4)),
    Opcode.MEM_WRITE: (("addr", 8), ("length", 2)),
    Opcode.MEM_READ: (("addr", 8), ("length", 2)),
}
#: Bytes of fields after the opcode byte (not counting MEM_WRITE's data).
REQUEST_FIELD_BYTES = {op: sum(n for _, n in f) for op, f in REQUEST_FIELDS.items()}
#: The payload of a response to an accepted request.
RESPONSE_PAYLOAD = {
    Opcode.PING: "4 bytes: `LINK_MAGIC` 0x4D4F (u16), `LINK_VERSION` (u8), bytes a memory "
                 "bus beat (u8)",
    Opcode.REG_READ: "value (u32)",
    Opcode.REG_WRITE: "-",
    Opcode.MEM_WRITE: "-",
    Opcode.MEM_READ: "`length` bytes",
}
_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


class LinkError(ValueError):
    """A byte sequence that is not a well-formed frame."""


@dataclass(frozen=True)
class Response:
    opcode: int
    payload: bytes
    status: ErrorCode

    @property
    def ok(self):
        return self.status == ErrorCode.OK


def _check_length(length):
    if not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
        raise ValueError(f"length must be 1..{MAX_LENGTH}, not {length!r}")


def encode_ping() -> bytes:
    return bytes((REQ_SYNC, Opcode.PING))


def encode_reg_read(addr: int) -> bytes:
    return bytes((REQ_SYNC, Opcode.REG_READ)) + struct.pack("<H", addr)


def encode_reg_write(addr: int, value: int) -> bytes:
    return bytes((REQ_SYNC, Opcode.REG_WRITE)) + struct.pack("<HI", addr, value & 0xFFFF_FFFF)


def encode_mem_write(addr: int, data: bytes) -> bytes:
    _check_length(len(data))
    return bytes((REQ_SYNC, Opcode.MEM_WRITE)) + struct.pack("<QH", addr, len(data)) + bytes(data)


def encode_mem_read(addr: int, length: int) -> bytes:
    _check_length(length)
    return bytes((REQ_SYNC, Opcode.MEM_READ)) + struct.pack("<QH", addr, length)


def encode_response(opcode: int, payload: bytes, status) -> bytes:
    return (bytes((RSP_SYNC, opcode)) + struct.pack("<H", len(payload)) + bytes(payload)
            + bytes((int(status),)))


def decode_request(frame: bytes) -> tuple[Opcode, dict]:
    """``(opcode, fields)`` of one whole request frame (for models and tests)."""
    if len(frame) < 2 or frame[0] != REQ_SYNC:
        raise LinkError(f"a request starts with {REQ_SYNC:#04x}: {frame[:2].hex()}")
    try:
        op = Opcode(frame[1])
    except ValueError:
        raise LinkError(f"undefined opcode {frame[1]:#04x}") from None
    body = frame[2:]
    need = REQUEST_FIELD_BYTES[op]
    if len(body) < need:
        raise LinkError(f"{op.name}: {len(body)} field bytes, {need} needed")
    fmt = "<" + "".join(_FORMATS[n] for _, n in REQUEST_FIELDS[op])
    fields = dict(zip((name for name, _ in REQUEST_FIELDS[op]), struct.unpack_from(fmt, body)))
    if op == Opcode.MEM_WRITE:
        fields["data"] = bytes(body[need:need + fields["length"]])
        need += fields["length"]
    if len(body) != need:
        raise LinkError(f"{op.name}: frame of {len(frame)} bytes, {need + 2} expected")
    return op, fields


def response_bytes(frame_start: bytes) -> int | None:
    """Total length of the response whose first bytes are ``frame_start`` (``None`` until the
    header is complete)."""
    if len(frame_start) < RSP_HEADER_BYTES:
        return None
    if frame_start[0] != RSP_SYNC:
        raise LinkError(f"a response starts with {RSP_SYNC:#04x}, not {frame_start[0]:#04x}")
    return RSP_HEADER_BYTES + struct.unpack_from("<H", frame_start, 2)[0] + 1


def decode_response(frame: bytes) -> Response:
    total = response_bytes(frame)
    if total is None or len(frame) != total:
        raise LinkError(f"response of {len(frame)} bytes, {total} expected")
    try:
        status = ErrorCode(frame[-1])
    except ValueError:
        raise LinkError(f"status byte {frame[-1]:#04x} is no ErrorCode") from None
    return Response(frame[1], bytes(frame[RSP_HEADER_BYTES:-1]), status)


def bytes_per_second(baud: float, op: Opcode, length: int) -> float:
    """Payload bytes a second of back-to-back ``op`` requests of ``length`` bytes (``REG_*``:
    4) over an 8N1 line at ``baud``, counting request and response bytes (the bridge's own
    cycles, a few per byte, are negligible next to a bit time)."""
    fields = 2 + REQUEST_FIELD_BYTES[op]
    payload = {Opcode.MEM_WRITE: 0, Opcode.MEM_READ: length, Opcode.REG_READ: REG_VALUE_BYTES,
               Opcode.REG_WRITE: 0, Opcode.PING: PING_PAYLOAD_BYTES}[op]
    sent = fields + (length if op == Opcode.MEM_WRITE else 0)
    received = RSP_HEADER_BYTES + payload + 1
    moved = length if op in (Opcode.MEM_WRITE, Opcode.MEM_READ) else REG_VALUE_BYTES
    return moved * baud / BITS_PER_BYTE / (sent + received)


def protocol_table() -> str:
    """The opcode table of docs/fpga.md, in markdown, from :data:`REQUEST_FIELDS` and
    :data:`RESPONSE_PAYLOAD`."""
    lines = ["| opcode | code | request after `REQ_SYNC`, opcode | response payload (accepted) |",
             "|---|---|---|---|"]
    for op in Opcode:
        fields = ", ".join(f"{name} (u{8 * n})" for name, n in REQUEST_FIELDS[op]) or "-"
        if op == Opcode.MEM_WRITE:
            fields += ", `length` data bytes"
        lines.append(f"| {op.name} | {op.value:#04x} | {fields} | {RESPONSE_PAYLOAD[op]} |")
    return "\n".join(lines) + "\n"
