"""cocotb bench of the board top with its power-up self-test
(:class:`openmaia.fpga.board_tile.BoardTile` with ``self_test=``), under Verilator: the LEDs'
two outputs and the hand-over of the tile to the host.

Testcase ``power_up``: reset, then at once the host (``LinkHost`` on the bit-level UART models)
sends a REG_READ of CQ_HEAD, which the bridge holds until the self-test has released the
ports. The bench checks: ``self_test_done`` rises within ``limit`` cycles and
``self_test_pass`` equals ``expect_pass`` from then on; the held request is answered with 0
(the self-test's cleanup emptied the queue); STATUS reads RUNNING (the cleanup restarted the
TCP); a MEM_READ of the result region returns ``result`` (hex; the bytes the tile's run must have
left, on the flipped variant too: the golden run of its memory); the host then owns the memory
port (a MEM_WRITE / MEM_READ round trip below the ring) and the register port (ID reads
``magic``); no framing error on ``tx``.

Parameters (:func:`openmaia.harness.bench_params`): ``divisor``, ``limit``, ``expect_pass``,
``status_address``, ``cq_head_address``, ``result_base``, ``result`` (hex), ``scratch`` (a free memory address),
``id_address``, ``magic``.
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from openmaia.benches.uart_model import LinkHost, UartDriver, UartMonitor
from openmaia.harness import bench_params

CLOCK_NS = 10


@cocotb.test()
async def power_up(dut):
    """Module docstring."""
    p = bench_params()
    divisor = p["divisor"]
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    driver = UartDriver(dut.rx, clock_ns=CLOCK_NS, divisor=divisor)
    monitor = UartMonitor(dut.tx, clock_ns=CLOCK_NS, divisor=divisor).start()
    host = LinkHost(driver, monitor, slack_ns=p["limit"] * CLOCK_NS)
    held = cocotb.start_soon(host.reg_read(p["cq_head_address"]))

    done_cycle = None
    for cycle in range(p["limit"]):
        await RisingEdge(dut.clk)
        if int(dut.self_test_done.value):
            done_cycle = cycle
            break
    assert done_cycle is not None, f"self_test_done not within {p['limit']} cycles"
    dut._log.info("self-test done at cycle %d, pass %d", done_cycle,
                  int(dut.self_test_pass.value))
    assert int(dut.self_test_pass.value) == int(p["expect_pass"])

    resp = await held
    assert resp.ok and resp.payload == bytes(4), resp
    resp = await host.mem_read(p["result_base"], len(bytes.fromhex(p["result"])))
    assert resp.ok and resp.payload.hex() == p["result"], (resp.payload.hex(), p["result"])
    word = bytes((0xA5, 0x5A, 0x3C, 0xC3))
    assert (await host.mem_write(p["scratch"], word)).ok
    resp = await host.mem_read(p["scratch"], len(word))
    assert resp.ok and resp.payload == word
    resp = await host.reg_read(p["status_address"])
    assert resp.ok and int.from_bytes(resp.payload, "little") & 0x3 == 0, resp   # RUNNING
    resp = await host.reg_read(p["id_address"])
    assert resp.ok and int.from_bytes(resp.payload, "little") & 0xFFFF == p["magic"]
    for _ in range(100):
        await RisingEdge(dut.clk)
        assert int(dut.self_test_done.value) == 1
        assert int(dut.self_test_pass.value) == int(p["expect_pass"])
    monitor.check()
