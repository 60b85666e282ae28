"""The one error-code enumeration shared by every block, the SDK and the docs.

A block that rejects a command, a descriptor or an access reports one of these codes in its status
and goes on working. Values are hardware encodings (8 bits) and are never reused.
"""

import enum

__all__ = ["ErrorCode", "ERROR_CODE_BITS"]

#: Width of an error-code field in every status register and stream.
ERROR_CODE_BITS = 8


class ErrorCode(enum.IntEnum):
    """Why a block refused or aborted work. ``OK`` (0) means no error."""

    def __new__(cls, value, description):
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    OK = 0x00, "no error"
    ILLEGAL_OPCODE = 0x01, "Command stream or host link: the opcode is not defined."
    ILLEGAL_FIELD = 0x02, ("Command stream or host link: a field holds a value the command "
                           "does not accept.")
    FORMAT_NOT_BUILT = 0x03, ("A format selector names a format this configuration does not "
                               "build in.")
    ILLEGAL_SHAPE = 0x04, "A tile operation's M, N or K is zero or larger than the hardware holds."
    ENGINE_NOT_BUILT = 0x05, ("Command stream: the command names an engine this configuration "
                              "does not build (a TVP command on a tile without the vector unit).")
    DESC_ZERO_COUNT = 0x10, "DMA descriptor: a count is zero."
    DESC_STRIDE_OVERFLOW = 0x11, "DMA descriptor: an address from base, counts, strides overflows."
    DESC_OUT_OF_WINDOW = 0x12, "DMA descriptor: the transfer reaches outside the allowed window."
    DESC_BAD_ELEMENT = 0x13, ("DMA descriptor: the element size is not 1, 2 or 4, or packed data "
                               "is not whole blocks.")
    TSRAM_OUT_OF_RANGE = 0x20, "TSRAM: an address outside the SRAM."
    ECC_UNCORRECTABLE = 0x21, "TSRAM: an uncorrectable (double-bit) ECC error on read."
    AXI_SLVERR = 0x30, "AXI: the subordinate answered SLVERR."
    AXI_DECERR = 0x31, "AXI: the subordinate answered DECERR."
    SEMAPHORE_OVERFLOW = 0x40, "Semaphore: a signal would take a counter past its maximum."
    SEMAPHORE_INDEX = 0x41, "Semaphore: the index names no semaphore."
