"""A design under simulation, served to Python over a Unix socket: the cocotb testcase ``serve``
of a bench connects back, and requests (tuples) go one at a time, each answered ``("ok", value)``
or ``("error", text)``. The ``rtl`` backend (the tile) and the ``fpga`` backend's simulated board
(the board top) both run this way."""

import os
import tempfile
import threading
from multiprocessing.connection import Listener

__all__ = ["SimulationSession", "serve_simulation"]


def serve_simulation(component, *, bench, name, params, seed, verilog=None):
    """Start the cocotb testcase ``serve`` of ``bench`` on ``component`` in a thread (the
    simulator is a child process) and return ``(connection, thread, outcome)`` once the bench
    has connected back to the Unix socket it gets as parameter ``socket``. ``outcome`` is a
    dict that receives ``result`` (the :class:`~openmaia.harness.sim.SimResult` or the
    exception) when the simulation ends."""
    from ..harness.sim import simulate
    address = os.path.join(tempfile.mkdtemp(prefix=f"openmaia-{name}-"), "bench.sock")
    listener = Listener(address, family="AF_UNIX")
    outcome = {}

    def target():
        try:
            outcome["result"] = simulate(component, bench=bench, name=name,
                                         params=dict(params, socket=address), testcase="serve",
                                         seed=seed, verilog=verilog, check=False)
        except BaseException as exc:  # noqa: BLE001 - reported when the connection fails
            outcome["result"] = exc
        finally:
            listener.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    box = {}

    def accept():
        try:
            box["conn"] = listener.accept()
        except OSError as exc:
            box["error"] = exc
    waiter = threading.Thread(target=accept, daemon=True)
    waiter.start()
    while waiter.is_alive():        # the Verilator build comes first
        waiter.join(1.0)
        if not thread.is_alive() and "conn" not in box:
            listener.close()
            waiter.join(5.0)
            raise RuntimeError(f"the {name} simulation ended before it connected: "
                               f"{outcome.get('result')!r}")
    if "conn" not in box:
        raise RuntimeError(f"the {name} simulation did not connect: {box.get('error')!r}")
    return box["conn"], thread, outcome


class SimulationSession:
    """One served simulation, started on the first :meth:`call` by ``start()`` (which returns
    what :func:`serve_simulation` returns); ``label`` names it in errors."""

    def __init__(self, start, *, label):
        self._start, self.label = start, label
        self._conn = self._thread = None
        self.outcome = {}

    @property
    def running(self) -> bool:
        return self._conn is not None

    def start(self):
        """Start the simulation unless it runs (the first :meth:`call` does it too)."""
        if self._conn is None:
            self._conn, self._thread, self.outcome = self._start()

    def call(self, *request):
        """Send ``request``; its value, or :class:`RuntimeError` with the bench's traceback (or
        the simulation's result, if it stopped)."""
        self.start()
        self._conn.send(request)
        try:
            reply = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the {self.label} simulation stopped: "
                               f"{self.outcome.get('result')!r}") from None
        if reply[0] == "error":
            raise RuntimeError(f"{self.label} bench error:\n{reply[1]}")
        return reply[1]

    def close(self):
        """End the simulation (its cocotb test passes when it ends this way); its result."""
        if self._conn is not None:
            try:
                self.call("close")
            finally:
                self._conn.close()
                self._conn = None
                self._thread.join(60)
        return self.outcome.get("result")
