"""Amaranth-simulator bench of the board top with its power-up self-test
(:class:`openmaia.fpga.board_tile.BoardTile` with ``self_test=``): runs from reset until
``self_test_done`` (and until a host request sent at reset is answered), with a bit-level UART
host on the ``rx`` / ``tx`` pins, and reports what happened.

The Amaranth simulator, not cocotb + Verilator: the ``ice40`` self-test is done in a few hundred
cycles, so the simulator's start (about 15 s) costs less than a Verilator build (about 2 min),
and every image variant (a flipped bit, another checksum) is a different design.

``python -m openmaia.benches.self_test [--config ice40] [--crc-bits 8]`` prints the figures of
docs/fpga.md, "Self-test".
"""

import argparse
import time

from amaranth.sim import Simulator
from openmaia.config import get_config
from openmaia.fpga import link
from openmaia.fpga.board_tile import BoardTile
from openmaia.fpga.self_test import SelfTestFail, SelfTestImage

__all__ = ["simulate_board"]


def _uart_wave(frame, divisor):
    """The ``rx`` level a cycle for ``frame`` sent 8N1 back to back."""
    wave = []
    for byte in frame:
        bits = [0] + [byte >> i & 1 for i in range(8)] + [1]
        for bit in bits:
            wave += [bit] * divisor
    return wave


def simulate_board(image, *, divisor=4, host_frame=None, faults=(), limit=None):
    """Simulate ``BoardTile(image.config, self_test=image)`` from reset.

    ``host_frame``: a link request the host sends from the first cycle (the bridge must hold
    it until the self-test is done); ``faults``: the self-test's; ``limit``: cycles before the
    run is abandoned (default: the image's budget plus 64 byte times). Returns a dict:
    ``done_cycle`` (first cycle with ``self_test_done``, None if never), ``passed``, ``fail``
    (:class:`SelfTestFail`), ``checksum`` (the hardware's CRC), ``active_at_done``,
    ``released_cycle`` (first cycle the self-test no longer owns the ports),
    ``first_poll_cycle`` / ``first_read_cycle`` (first STATUS read / result read requested:
    the ends of the register-write and the GEMM phases), ``stats``,
    ``response`` (the decoded :class:`~openmaia.fpga.link.Response` or None),
    ``response_cycle`` (cycle of its first start bit), ``cycles`` simulated,
    ``wall_seconds`` (simulation without the start), ``start_seconds``."""
    t0 = time.monotonic()
    board = BoardTile(image.config, hbm_bytes=image.memory_bytes, divisor=divisor,
                      self_test=image, self_test_faults=faults)
    st = board.self_test
    wave = _uart_wave(host_frame or b"", divisor)
    if limit is None:
        limit = image.max_cycles + 64 * 10 * divisor
    out = {"done_cycle": None, "released_cycle": None, "response": None,
           "response_cycle": None, "first_poll_cycle": None, "first_read_cycle": None}

    async def bench(ctx):
        received, rx_state = bytearray(), None       # rx_state: (cycle of start edge)
        want = None
        last_tx = 1
        cycle = 0
        t_start = time.monotonic()
        for cycle in range(limit):
            ctx.set(board.rx, wave[cycle] if cycle < len(wave) else 1)
            await ctx.tick()
            if out["done_cycle"] is None and ctx.get(board.self_test_done):
                out["done_cycle"] = cycle
                out["active_at_done"] = ctx.get(st.active)
            for key, valid in (("first_poll_cycle", st.m_axil.arvalid),
                               ("first_read_cycle", st.m_axi.arvalid)):
                if out[key] is None and ctx.get(valid):
                    out[key] = cycle
            if out["released_cycle"] is None and not ctx.get(st.active):
                out["released_cycle"] = cycle
            tx = ctx.get(board.tx)
            if rx_state is None and last_tx == 1 and tx == 0:
                rx_state = (cycle, 0)
                if out["response_cycle"] is None:
                    out["response_cycle"] = cycle
            elif rx_state is not None:
                edge, value = rx_state
                offset = cycle - edge
                bit = (offset - divisor // 2) // divisor
                if (offset - divisor // 2) % divisor == 0 and 1 <= bit <= 9:
                    if bit <= 8:
                        rx_state = (edge, value | tx << (bit - 1))
                    else:
                        assert tx == 1, f"stop bit low at cycle {cycle}"
                        received.append(value)
                        rx_state = None
                        if want is None:
                            want = link.response_bytes(bytes(received))
            last_tx = tx
            host_done = host_frame is None or (want is not None and len(received) >= want)
            if out["released_cycle"] is not None and host_done:
                break
        out["cycles"] = cycle + 1
        out["wall_seconds"] = time.monotonic() - t_start
        out["passed"] = bool(ctx.get(board.self_test_pass))
        out["fail"] = SelfTestFail(ctx.get(st.fail))
        out["checksum"] = ctx.get(st.checksum)
        out["stats"] = {name: ctx.get(getattr(st.stats, name))
                        for name in st.stats.shape().members}
        if want is not None and len(received) >= want:
            out["response"] = link.decode_response(bytes(received[:want]))

    sim = Simulator(board)
    sim.add_clock(1 / (image.config.clock_mhz * 1e6))
    sim.add_testbench(bench)
    sim.run()
    out["start_seconds"] = time.monotonic() - t0 - out["wall_seconds"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="the self-test's figures (Amaranth simulator)")
    parser.add_argument("--config", default="ice40")
    parser.add_argument("--hbm-bytes", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flip-bit", type=int, default=None)
    args = parser.parse_args(argv)
    config = get_config(args.config)
    image = SelfTestImage.for_config(config, hbm_bytes=args.hbm_bytes, seed=args.seed,
                                     flip_bit=args.flip_bit)
    print(image.summary())
    rmap = BoardTile(config, hbm_bytes=args.hbm_bytes, divisor=4).register_map
    frame = link.encode_reg_read(rmap["CQ_HEAD"].address)
    r = simulate_board(image, host_frame=frame)
    mhz = config.clock_mhz
    print(f"done at cycle {r['done_cycle']} ({r['done_cycle'] / mhz:.1f} us at {mhz} MHz), "
          f"passed {r['passed']}, fail {r['fail'].name}, checksum {r['checksum']:#010x} "
          f"(stored {image.checksum:#010x})")
    print(f"phases: register writes cycles 0..{r['first_poll_cycle']}, GEMM (STATUS polled) "
          f"until {r['first_read_cycle']}, result read and CRC until {r['done_cycle']}; "
          f"ports released at cycle {r['released_cycle']}")
    print("stats", r["stats"])
    print(f"host REG_READ CQ_HEAD sent at reset: answer {r['response']} starting at cycle "
          f"{r['response_cycle']}")
    print(f"simulation: {r['wall_seconds']:.1f} s for {r['cycles']} cycles, start "
          f"{r['start_seconds']:.1f} s")


if __name__ == "__main__":
    main()
