"""Independent HBM3 timing checker: reads a DRAM command stream, reports every violated limit.

Written from the timing table of ../shared/brief/hbm3.md (JESD238-style definitions), not from
the controller's code: it imports nothing from ``openmaia.hbm``. It is fed commands one by one
(:meth:`HbmTimingChecker.command`) with the cycle they were issued in, and at the end
:meth:`HbmTimingChecker.finish`; every violation is recorded as a string in ``violations``.

Rules, with ``BL = tBURST`` (a BL8 burst on the 32-bit pseudo-channel takes 2 tCK: 4 bits a pin
a tCK at 6.4 Gb/s and tCK = 0.625 ns):

* per bank: ACT only to a closed bank, RD / WR / PRE only to an open bank (RD / WR to the open
  row); ACT -> RD >= tRCD_RD, ACT -> WR >= tRCD_WR, PRE -> ACT >= tRP, ACT -> PRE >= tRAS,
  ACT -> ACT >= tRC, RD -> PRE >= tRTP, WR -> PRE >= CWL + BL + tWR (write recovery counts from
  the end of the write data);
* per bank group: ACT -> ACT >= tRRD_L, column -> column >= tCCD_L, WR -> RD >= CWL + BL + tWTR_L;
* per stack ID: column -> column in the same stack ID >= tCCD_S, to the other stack ID >= tCCD_R;
* per pseudo-channel: ACT -> ACT >= tRRD_S, at most four ACTs in any tFAW window (the fifth ACT
  >= tFAW after the first), WR -> RD >= CWL + BL + tWTR_S, RD -> WR >= tRTW, data bursts (RD at
  CL, WR at CWL, BL long) never overlap on the data bus;
* refresh: REF only with every bank closed and >= tRP after the last PRE; REF -> ACT and
  REF -> REF >= tRFC; refresh k (k = 1, 2, ...) is issued by cycle (k + 1) * tREFI, i.e. at most
  one refresh is ever postponed, so by cycle c at least floor(c / tREFI) - 1 refreshes happened.
"""

from collections import deque

__all__ = ["BRIEF_HBM3_6400", "HbmTimingChecker", "TIMING_KEYS"]

#: The table of ../shared/brief/hbm3.md (tCK units), typed in from the brief.
BRIEF_HBM3_6400 = {
    "CL": 20, "CWL": 10, "tRCD_RD": 31, "tRCD_WR": 15, "tRP": 26, "tRAS": 45, "tRC": 72,
    "tWR": 33, "tRTP": 9, "tRTW": 20, "tCCD_S": 2, "tCCD_L": 4, "tRRD_S": 4, "tRRD_L": 5,
    "tFAW": 24, "tWTR_S": 7, "tWTR_L": 10, "tREFI": 6240, "tRFC": 416, "tCCD_R": 3,
    "tBURST": 2,
}
TIMING_KEYS = tuple(BRIEF_HBM3_6400)

NEVER = -(10 ** 12)


class HbmTimingChecker:
    """Checks one pseudo-channel's command stream.

    ``timing``: the parameter values (keys :data:`TIMING_KEYS`; extra keys are ignored). With
    ``preset="HBM3_6400"`` the values must equal the brief's table. ``max_violations`` caps the
    stored messages (the count keeps going in ``count``).
    """

    def __init__(self, timing: dict, *, preset=None, stack_ids=2, bank_groups=4, banks=4,
                 max_violations=50):
        t = {k: int(timing[k]) for k in TIMING_KEYS}
        if preset == "HBM3_6400" and t != BRIEF_HBM3_6400:
            diff = {k: (t[k], BRIEF_HBM3_6400[k]) for k in t if t[k] != BRIEF_HBM3_6400[k]}
            raise ValueError(f"timing differs from the brief's HBM3_6400 table: {diff}")
        self.t = t
        self.sids, self.bgs, self.bas = stack_ids, bank_groups, banks
        self.violations: list[str] = []
        self.count = 0
        self.max_violations = max_violations
        self.commands = 0
        self.refreshes = 0
        self.forgiven = 0
        self.last_cycle = -1
        banks_all = [(s, g, b) for s in range(stack_ids) for g in range(bank_groups)
                     for b in range(banks)]
        self.open_row = {k: None for k in banks_all}
        self.act = dict.fromkeys(banks_all, NEVER)
        self.pre = dict.fromkeys(banks_all, NEVER)
        self.rd = dict.fromkeys(banks_all, NEVER)
        self.wr = dict.fromkeys(banks_all, NEVER)
        bgs = [(s, g) for s in range(stack_ids) for g in range(bank_groups)]
        self.act_bg = dict.fromkeys(bgs, NEVER)
        self.col_bg = dict.fromkeys(bgs, NEVER)
        self.wr_bg = dict.fromkeys(bgs, NEVER)
        self.col_sid = dict.fromkeys(range(stack_ids), NEVER)
        self.act_any = NEVER
        self.acts = deque(maxlen=4)
        self.wr_any = NEVER
        self.rd_any = NEVER
        self.pre_any = NEVER
        self.ref_any = NEVER
        self.bursts = deque(maxlen=8)

    # ------------------------------------------------------------------
    def _fail(self, cycle, what):
        self.count += 1
        if len(self.violations) < self.max_violations:
            self.violations.append(f"cycle {cycle}: {what}")

    def _gap(self, cycle, since, need, what):
        if cycle - since < need:
            self._fail(cycle, f"{what}: {cycle - since} < {need}")

    def command(self, cycle: int, cmd: str, sid=0, bg=0, ba=0, row=None, col=None):
        """One command (``ACT``, ``PRE``, ``REF``, ``RD``, ``WR``) issued in ``cycle``."""
        t = self.t
        if cycle < self.last_cycle:
            self._fail(cycle, f"command stream goes back in time ({cmd})")
        self.last_cycle = cycle
        self.commands += 1
        self._check_refresh_deadline(cycle)
        key, bgk = (sid, bg, ba), (sid, bg)
        if cmd == "ACT":
            if self.open_row[key] is not None:
                self._fail(cycle, f"ACT to open bank {key}")
            self._gap(cycle, self.pre[key], t["tRP"], f"tRP bank {key}")
            self._gap(cycle, self.act[key], t["tRC"], f"tRC bank {key}")
            self._gap(cycle, self.act_bg[bgk], t["tRRD_L"], f"tRRD_L bank group {bgk}")
            self._gap(cycle, self.act_any, t["tRRD_S"], "tRRD_S")
            if len(self.acts) == 4:
                self._gap(cycle, self.acts[0], t["tFAW"], "tFAW (fifth ACT)")
            self._gap(cycle, self.ref_any, t["tRFC"], "tRFC (REF -> ACT)")
            self.open_row[key] = row
            self.act[key] = self.act_bg[bgk] = self.act_any = cycle
            self.acts.append(cycle)
        elif cmd == "PRE":
            if self.open_row[key] is None:
                self._fail(cycle, f"PRE to closed bank {key}")
            self._gap(cycle, self.act[key], t["tRAS"], f"tRAS bank {key}")
            self._gap(cycle, self.rd[key], t["tRTP"], f"tRTP bank {key}")
            self._gap(cycle, self.wr[key], t["CWL"] + t["tBURST"] + t["tWR"],
                      f"tWR (WR -> PRE = CWL + BL + tWR) bank {key}")
            self.open_row[key] = None
            self.pre[key] = self.pre_any = cycle
        elif cmd == "REF":
            still_open = [k for k, r in self.open_row.items() if r is not None]
            if still_open:
                self._fail(cycle, f"REF with open banks {still_open[:4]}")
            self._gap(cycle, self.pre_any, t["tRP"], "tRP (PRE -> REF)")
            self._gap(cycle, self.ref_any, t["tRFC"], "tRFC (REF -> REF)")
            self.ref_any = cycle
            self.refreshes += 1
        elif cmd in ("RD", "WR"):
            if self.open_row[key] is None:
                self._fail(cycle, f"{cmd} to closed bank {key}")
            elif row is not None and self.open_row[key] != row:
                self._fail(cycle, f"{cmd} to row {row} of bank {key} whose open row is "
                                  f"{self.open_row[key]}")
            if cmd == "RD":
                self._gap(cycle, self.act[key], t["tRCD_RD"], f"tRCD (read) bank {key}")
                self._gap(cycle, self.wr_bg[bgk], t["CWL"] + t["tBURST"] + t["tWTR_L"],
                          f"tWTR_L bank group {bgk}")
                self._gap(cycle, self.wr_any, t["CWL"] + t["tBURST"] + t["tWTR_S"], "tWTR_S")
            else:
                self._gap(cycle, self.act[key], t["tRCD_WR"], f"tRCD (write) bank {key}")
                self._gap(cycle, self.rd_any, t["tRTW"], "tRTW")
            self._gap(cycle, self.col_bg[bgk], t["tCCD_L"], f"tCCD_L bank group {bgk}")
            self._gap(cycle, self.col_sid[sid], t["tCCD_S"], f"tCCD_S stack ID {sid}")
            for other in range(self.sids):
                if other != sid:
                    self._gap(cycle, self.col_sid[other], t["tCCD_R"],
                              f"tCCD_R stack ID {other} -> {sid}")
            start = cycle + (t["CL"] if cmd == "RD" else t["CWL"])
            for s, e in self.bursts:
                if start < e and s < start + t["tBURST"]:
                    self._fail(cycle, f"{cmd} data burst [{start}, {start + t['tBURST']}) "
                                      f"overlaps [{s}, {e}) on the data bus")
            self.bursts.append((start, start + t["tBURST"]))
            self.col_bg[bgk] = self.col_sid[sid] = cycle
            if cmd == "RD":
                self.rd[key] = self.rd_any = cycle
            else:
                self.wr[key] = self.wr_bg[bgk] = self.wr_any = cycle
        else:
            self._fail(cycle, f"unknown command {cmd!r}")

    def _check_refresh_deadline(self, cycle):
        need = cycle // self.t["tREFI"] - 1
        if self.refreshes + self.forgiven < need:
            self._fail(cycle, f"missed refresh: {self.refreshes} refreshes by cycle {cycle}, "
                              f"need {need} (one postponed at most)")
            self.forgiven = need - self.refreshes  # report each missed refresh once

    def finish(self, cycle: int):
        """End of the stream at ``cycle``: the refresh deadline up to there."""
        self._check_refresh_deadline(cycle)

    @property
    def passed(self) -> bool:
        return self.count == 0

    def report(self) -> str:
        head = (f"{self.commands} commands, {self.refreshes} refreshes, "
                f"{self.count} violations")
        return "\n".join([head] + self.violations)
