"""The pin-level SDRAM model (sim/sdram_model.py) driven by hand, in pure Python.

Each timing/state rule is broken exactly once on top of an otherwise legal
sequence and must be the only thing flagged; legal sequences (every burst
length, interrupts, auto precharge, DQM) must be silent and return the right
data; a refresh-starved row must come back corrupted.
"""

import dataclasses

import pytest

from seedchip.rtl.sdram import IS42S16160, M12L64322A
from seedchip.sim.sdram_model import RULES, SDRAMModel, SDRAMViolationError, mode_word

PERIOD = 10.0       # ns, 100 MHz
CHIP = dataclasses.replace(IS42S16160, init_delay=1000.0)
T = CHIP.cycles(1e9 / PERIOD)   # tRCD 2, tRP 2, tRAS 5, tRC 7, tRFC 7, tWR 2, tRRD 2, tMRD 2
A10 = 1 << 10


def new_model(chip=CHIP, **kw):
    return SDRAMModel(chip=chip, clk_period_ns=PERIOD, **kw)


def init(m, *, cl=2, bl=1, interleaved=False, single_write=False):
    """Legal init sequence at minimum spacing; returns the model."""
    m.idle(T.init)
    m.issue("PRECHARGE", a=A10)
    m.idle(T.tRP - 1)
    for _ in range(m.chip.init_refreshes):
        m.issue("REFRESH")
        m.idle(T.tRFC - 1)
    m.issue("LOAD_MODE", a=mode_word(cas_latency=cl, burst_length=bl,
                                     interleaved=interleaved, single_write=single_write))
    m.idle(T.tMRD - 1)
    assert m.initialized
    return m


def rules(m):
    return set(m.violation_counts)


def read_word(m, bank, col, *, cl=2, ap=False):
    """READ at the current edge; returns the word the chip drives for the
    edge CL later (and checks nothing was driven before)."""
    outs = [m.issue("READ", ba=bank, a=col | (A10 if ap else 0))]
    outs += m.idle(cl - 1)
    for v, d in outs[:-1]:
        assert d == 0
    value, driven = outs[-1]
    assert driven == m.word_mask
    return value


# -- legal sequences -------------------------------------------------------------

def test_legal_sequence_is_silent():
    m = init(new_model())
    m.issue("ACTIVE", ba=0, a=0x123)
    m.idle(T.tRRD - 1)
    m.issue("ACTIVE", ba=1, a=0x1FFF)
    m.idle(T.tRCD - T.tRRD - 1 if T.tRCD > T.tRRD else 0)
    m.issue("WRITE", ba=0, a=5, dq=0xBEEF)
    m.issue("WRITE", ba=1, a=511, dq=0x1234, dqm=0b10)   # high byte masked
    m.issue("WRITE", ba=0, a=6, dq=0xCAFE)
    m.issue("NOP")
    assert read_word(m, 0, 5) == 0xBEEF
    assert read_word(m, 0, 6) == 0xCAFE
    assert read_word(m, 1, 511) & 0xFF == 0x34
    # back-to-back reads, one per cycle, CL 2
    outs = [m.issue("READ", ba=0, a=5), m.issue("READ", ba=0, a=6), m.issue("READ", ba=1, a=511)]
    outs += m.idle(2)
    assert [v for v, _ in outs[1:4]] == [0xBEEF, 0xCAFE, m.peek((1, 0x1FFF, 511))]
    # write then read of the same word at minimum spacing (after a bus turnaround cycle)
    m.issue("NOP")
    m.issue("WRITE", ba=0, a=7, dq=0x7777)
    assert read_word(m, 0, 7) == 0x7777
    m.idle(T.tWR)
    m.issue("PRECHARGE", ba=0)
    m.issue("PRECHARGE", ba=1)
    m.idle(T.tRP - 1)
    m.issue("REFRESH")
    m.idle(T.tRFC - 1)
    m.issue("ACTIVE", ba=0, a=0x123)
    m.idle(T.tRCD - 1)
    assert read_word(m, 0, 5) == 0xBEEF
    m.issue("NOP")
    m.issue("PRECHARGE", a=A10)
    m.idle(T.tRP - 1)
    m.issue("LOAD_MODE", a=mode_word(cas_latency=3))
    m.idle(T.tMRD - 1)
    m.issue("ACTIVE", ba=3, a=0)
    m.idle(T.tRCD - 1)
    m.issue("WRITE", ba=3, a=0, dq=0x0F0F)
    assert read_word(m, 3, 0, cl=3) == 0x0F0F
    m.check()
    assert m.command_counts["ACTIVE"] == 4


@pytest.mark.parametrize("bl,interleaved", [(bl, il) for bl in (1, 2, 4, 8) for il in (False, True)]
                         + [("page", False)])     # full page is sequential only
def test_bursts(bl, interleaved):
    m = init(new_model(), bl=bl, interleaved=interleaved)
    m.issue("ACTIVE", ba=2, a=7)
    m.idle(T.tRCD - 1)
    n = 8 if bl == "page" else bl
    start = 5 if n > 1 else 3
    data = [0x1000 + i for i in range(n)]
    for i, d in enumerate(data):
        m.issue("WRITE" if i == 0 else "NOP", ba=2, a=start, dq=d)
    if bl == "page":
        m.issue("BURST_TERMINATE")
    outs = [m.issue("READ", ba=2, a=start)] + m.idle(n + 2)
    got = [v for v, d in outs[1:1 + n]]
    assert got == data
    if bl == "page":
        assert m.issue("BURST_TERMINATE")[1]         # CL - 1 more beats
        assert all(d == 0 for _, d in m.idle(4))
    else:
        assert all(d == 0 for _, d in outs[1 + n:])
    # where the beats went
    for i, d in enumerate(data):
        if bl == "page":
            col = (start + i) % CHIP.columns
        elif interleaved:
            col = (start & ~(n - 1)) | ((start & (n - 1)) ^ i)
        else:
            col = (start & ~(n - 1)) | ((start + i) & (n - 1))
        assert m.peek((2, 7, col)) == d
    m.check()


def test_full_page_wraps_and_runs_on():
    m = init(new_model(), bl="page")
    m.issue("ACTIVE", ba=0, a=1)
    m.idle(T.tRCD - 1)
    m.issue("WRITE", ba=0, a=CHIP.columns - 1, dq=0xAAAA)
    m.issue("NOP", dq=0xBBBB)
    m.issue("BURST_TERMINATE", dqm=0b11)
    assert m.peek((0, 1, CHIP.columns - 1)) == 0xAAAA and m.peek((0, 1, 0)) == 0xBBBB
    outs = [m.issue("READ", ba=0, a=CHIP.columns - 1)] + m.idle(CHIP.columns + 4)
    assert [v for v, _ in outs[1:3]] == [0xAAAA, 0xBBBB]
    assert all(d for _, d in outs[1:])      # runs on until terminated
    m.check()


def test_interrupts_and_dqm():
    m = init(new_model(), bl=4)
    m.issue("ACTIVE", ba=0, a=0)
    m.idle(T.tRCD - 1)
    m.issue("WRITE", ba=0, a=0, dq=0x1111)
    m.issue("NOP", dq=0x2222)
    m.issue("WRITE", ba=0, a=8, dq=0x3333)           # interrupts the first burst
    m.issue("NOP", dq=0x4444, dqm=0b01)              # low byte masked
    m.issue("NOP", dqm=0b11)                         # fully masked, not driven: legal
    m.issue("BURST_TERMINATE", dqm=0b11)
    assert [m.peek((0, 0, c)) for c in range(4)] == [0x1111, 0x2222, None, None]
    assert m.peek((0, 0, 8)) == 0x3333 and m.peek((0, 0, 9)) & 0xFF00 == 0x4400
    assert m.peek((0, 0, 10)) is None
    # READ interrupted by READ: the first burst delivers two beats
    outs = [m.issue("READ", ba=0, a=0), m.issue("NOP"), m.issue("READ", ba=0, a=8)]
    outs += m.idle(5)
    assert [v for v, _ in outs[1:5]] == [0x1111, 0x2222, 0x3333, m.peek((0, 0, 9))]
    m.idle(2)
    # DQM on reads: 2-cycle latency masks single beats
    outs = [m.issue("READ", ba=0, a=0), m.issue("NOP", dqm=0b01), m.issue("NOP", dqm=0b10)]
    outs += m.idle(3)
    assert [d for _, d in outs[1:5]] == [0xFFFF, 0xFF00, 0x00FF, 0xFFFF]
    m.idle(4)
    # READ then WRITE: DQM masks the read data two cycles ahead, one idle cycle
    m.issue("READ", ba=0, a=0)                       # beats for edges +2..+5
    m.issue("NOP", dqm=0b11)                         # masks edge +3
    m.issue("NOP", dqm=0b11)                         # masks edge +4
    m.issue("NOP", dqm=0b11)
    m.issue("WRITE", ba=0, a=16, dq=0x5555)          # edge +4; ends the read
    m.issue("BURST_TERMINATE", dqm=0b11)
    assert m.peek((0, 0, 16)) == 0x5555
    m.check()


def test_auto_precharge():
    m = init(new_model(), bl=2)
    m.issue("ACTIVE", ba=1, a=3)
    m.idle(T.tRAS - 2)
    m.issue("WRITE", ba=1, a=4 | A10, dq=0xAB)       # AP after last data + tWR
    m.issue("NOP", dq=0xCD)
    m.idle(T.tWR + T.tRP - 1)
    m.issue("ACTIVE", ba=1, a=3)
    m.idle(T.tRAS - 2)
    outs = [m.issue("READ", ba=1, a=4 | A10)] + m.idle(3)
    assert [v for v, _ in outs[1:3]] == [0xAB, 0xCD]
    m.idle(T.tRP - 2)
    m.issue("ACTIVE", ba=1, a=9)
    m.check()


def test_colorlight_geometry_32bit():
    chip = dataclasses.replace(M12L64322A, init_delay=500.0)
    m = SDRAMModel(chip=chip, clk_period_ns=PERIOD)
    t = chip.cycles(100e6)
    m.idle(t.init)
    m.issue("PRECHARGE", a=A10)
    m.idle(t.tRP - 1)
    for _ in range(2):
        m.issue("REFRESH")
        m.idle(t.tRFC - 1)
    m.issue("LOAD_MODE", a=mode_word(cas_latency=2))
    m.idle(t.tMRD - 1)
    m.issue("ACTIVE", ba=3, a=chip.rows - 1)
    m.idle(t.tRCD - 1)
    m.issue("WRITE", ba=3, a=chip.columns - 1, dq=0xDEADBEEF, dqm=0b0100)
    outs = [m.issue("READ", ba=3, a=chip.columns - 1)] + m.idle(2)
    assert outs[1][0] & 0xFF00FFFF == 0xDE00BEEF
    m.check()


# -- each rule broken once ---------------------------------------------------------------

def _open(m, bank=0, row=1):
    m.issue("ACTIVE", ba=bank, a=row)
    m.idle(T.tRCD - 1)


def v_tRCD(m):
    m.issue("ACTIVE", ba=0, a=1)
    m.idle(T.tRCD - 2)
    m.issue("READ", ba=0, a=0)


def v_tRP(m):
    _open(m)
    m.idle(T.tRAS)
    m.issue("PRECHARGE", ba=0)
    m.idle(T.tRP - 2)
    m.issue("ACTIVE", ba=0, a=2)


def v_tRAS(m):
    _open(m)
    m.issue("PRECHARGE", ba=0)


def v_tRC(m):
    # Run on a chip with tRC = 80 ns > tRAS + tRP rounded up (70 ns at 10 ns).
    m.issue("ACTIVE", ba=0, a=1)
    m.idle(T.tRAS - 1)
    m.issue("PRECHARGE", ba=0)            # tRAS met
    m.idle(T.tRP - 1)
    m.issue("ACTIVE", ba=0, a=2)          # tRP met, tRC not


def v_tRAS_max(m):
    _open(m)
    # run with tRAS_max_ns=5000 (100 us would break tREFI first)
    m.idle(int(5000 / PERIOD) + 1)
    m.issue("PRECHARGE", ba=0)


def v_tRRD(m):
    m.issue("ACTIVE", ba=0, a=1)
    m.issue("ACTIVE", ba=1, a=1)


def v_tWR(m):
    _open(m)
    m.idle(T.tRAS)
    m.issue("WRITE", ba=0, a=0, dq=1)
    m.idle(T.tWR - 2)
    m.issue("PRECHARGE", ba=0)


def v_tRFC(m):
    m.issue("REFRESH")
    m.idle(T.tRFC - 2)
    m.issue("ACTIVE", ba=0, a=1)


def v_tMRD(m):
    m.issue("LOAD_MODE", a=mode_word(cas_latency=2))
    m.issue("ACTIVE", ba=0, a=1)


def v_tXSR(m):
    m.issue("REFRESH", cke=0)             # self refresh entry
    m.idle(10, cke=0)
    m.issue("NOP")                         # CKE high: exit
    m.idle(2)
    m.issue("ACTIVE", ba=0, a=1)


def v_state(m):
    m.issue("READ", ba=2, a=0)            # bank 2 idle


def v_mode(m):
    m.issue("LOAD_MODE", a=mode_word(cas_latency=2) | 0b100)  # BL code 4 is reserved


def v_bus(m):
    _open(m)
    m.issue("WRITE", ba=0, a=0)           # unmasked, dq_oe low


def v_tREFI(m):
    m.idle(int((CHIP.tREFI * (m.refresh_postpone_max + 3)) / PERIOD))


VIOLATORS = {name[2:]: f for name, f in globals().items() if name.startswith("v_")}
CHIP_FOR = {"tRC": dataclasses.replace(CHIP, tRC=80.0)}
MODEL_KW = {"tRAS_max": {"tRAS_max_ns": 5000.0}}


def test_every_rule_has_a_violator():
    assert set(VIOLATORS) | {"init", "retention"} == set(RULES)


@pytest.mark.parametrize("rule", sorted(VIOLATORS))
def test_rule_flagged(rule):
    m = init(new_model(CHIP_FOR.get(rule, CHIP), **MODEL_KW.get(rule, {})))
    m.check()
    VIOLATORS[rule](m)
    assert rules(m) == {rule}, m.report()
    with pytest.raises(SDRAMViolationError, match=rule):
        m.check()


@pytest.mark.parametrize("rule", sorted(VIOLATORS))
def test_rule_can_be_disabled(rule):
    m = init(new_model(CHIP_FOR.get(rule, CHIP), disable=[rule], **MODEL_KW.get(rule, {})))
    VIOLATORS[rule](m)
    assert not m.violations, m.report()


def test_bus_contention():
    m = init(new_model(), bl=4)
    _open(m)
    m.issue("READ", ba=0, a=0)
    m.issue("NOP")
    m.issue("NOP")
    m.issue("WRITE", ba=0, a=0, dq=5)     # read data was driven for edges +2 and +3
    assert rules(m) == {"bus"}
    assert "chip drives" in m.violations[0].details or "turnaround" in m.violations[0].details


def test_contention_turnaround():
    m = init(new_model())
    _open(m)
    m.issue("READ", ba=0, a=0)
    m.idle(2)                             # data for edge +2 driven
    m.issue("WRITE", ba=0, a=1, dq=5)     # edge +3: no idle cycle on the bus
    assert rules(m) == {"bus"}
    assert "turnaround" in m.violations[0].details


@pytest.mark.parametrize("case", ["early", "no_prea", "few_refreshes", "no_mode"])
def test_init_flagged(case):
    m = new_model()
    if case == "early":
        m.idle(T.init - 5)
    else:
        m.idle(T.init)
    if case != "no_prea":
        m.issue("PRECHARGE", a=A10)
        m.idle(T.tRP - 1)
    for _ in range(CHIP.init_refreshes - (1 if case == "few_refreshes" else 0)):
        m.issue("REFRESH")
        m.idle(T.tRFC - 1)
    if case != "no_mode":
        m.issue("LOAD_MODE", a=mode_word(cas_latency=2))
        m.idle(T.tMRD - 1)
    m.issue("ACTIVE", ba=0, a=0)
    assert "init" in rules(m), m.report()
    assert rules(m) <= {"init"}


def test_state_rules():
    m = init(new_model())
    _open(m, 0, 1)
    m.idle(T.tRC)
    m.issue("ACTIVE", ba=0, a=2)           # bank open
    m.issue("REFRESH")                    # bank open
    m.issue("LOAD_MODE", a=mode_word(cas_latency=2))     # bank open
    assert m.violation_counts["state"] == 3


def test_cas_latency_vs_clock():
    m = SDRAMModel(chip=CHIP, clk_period_ns=7.0)   # 143 MHz: CL2 only to 100 MHz
    m.idle(int(CHIP.init_delay / 7) + 1)
    m.issue("PRECHARGE", a=A10)
    m.idle(5)
    m.issue("LOAD_MODE", a=mode_word(cas_latency=2))
    assert rules(m) == {"mode"} and "100 MHz" in m.violations[0].details


def test_report_is_readable():
    m = init(new_model())
    v_tRCD(m)
    with pytest.raises(SDRAMViolationError) as e:
        m.check()
    text = str(e.value)
    assert "1 SDRAM protocol violation" in text and "tRCD" in text and "READ bank 0" in text
    assert "ns" in text and "edge" in text


# -- refresh and retention -----------------------------------------------------------------

def _write_rows(m, rows, value):
    for bank, row in rows:
        m.issue("ACTIVE", ba=bank, a=row)
        m.idle(T.tRCD - 1)
        m.issue("WRITE", ba=bank, a=0x40, dq=value)
        m.idle(max(T.tWR, T.tRAS))
        m.issue("PRECHARGE", ba=bank)
        m.idle(T.tRC)


def _read_rows(m, rows):
    out = []
    for bank, row in rows:
        m.issue("ACTIVE", ba=bank, a=row)
        m.idle(T.tRCD - 1)
        out.append(read_word(m, bank, 0x40))
        m.idle(T.tRAS)
        m.issue("PRECHARGE", ba=bank)
        m.idle(T.tRC)
    return out


ROWS = [(0, 0), (1, 5), (2, 4000), (3, CHIP.rows - 1)]


def test_refresh_starvation_corrupts_rows():
    m = init(new_model(retention_ns=50_000, disable=["tREFI"]))
    _write_rows(m, ROWS, 0x5AA5)
    m.idle(int(60_000 / PERIOD))                    # no refresh for 60 us
    got = _read_rows(m, ROWS)
    assert all(g != 0x5AA5 for g in got), got
    assert rules(m) == {"retention"}
    assert m.violation_counts["retention"] == len(ROWS)
    assert "corrupted" in m.violations[0].details


def test_refresh_keeps_rows():
    # retention window of 20 tREFI; 16 refreshes cover all rows, so up to 4
    # postponed refreshes still keep every row.
    m = init(new_model(retention_ns=20 * CHIP.tREFI, refreshes_per_window=16))
    _write_rows(m, ROWS, 0x5AA5)
    n_ref = int(3 * 20 * CHIP.tREFI / PERIOD) // T.tREFI
    for _ in range(n_ref):
        m.issue("REFRESH")
        m.idle(T.tREFI - 1)
    assert _read_rows(m, ROWS) == [0x5AA5] * len(ROWS)
    m.check()


def test_refresh_too_slow_corrupts_rows():
    m = init(new_model(retention_ns=20 * CHIP.tREFI, refreshes_per_window=16, disable=["tREFI"]))
    _write_rows(m, ROWS, 0x5AA5)
    for _ in range(30):
        m.issue("REFRESH")
        m.idle(2 * T.tREFI - 1)                     # half the rate
    got = _read_rows(m, ROWS)
    assert got != [0x5AA5] * len(ROWS)
    assert rules(m) == {"retention"}


def test_unrefreshed_data_flagged_at_end():
    m = init(new_model(retention_ns=50_000, disable=["tREFI"]))
    _write_rows(m, ROWS[:1], 0x1234)
    m.idle(int(60_000 / PERIOD))
    with pytest.raises(SDRAMViolationError, match="retention"):
        m.check()


def test_postponed_refreshes_allowed():
    m = init(new_model())
    m.idle(int(CHIP.tREFI * 8.5 / PERIOD))
    for _ in range(9):
        m.issue("REFRESH")
        m.idle(T.tRFC - 1)
    m.idle(int(CHIP.tREFI * 0.4 / PERIOD))
    m.check()


# -- fault injection -------------------------------------------------------------------------

def test_flip_bit():
    m = init(new_model())
    _open(m, 1, 2)
    m.issue("WRITE", ba=1, a=3, dq=0x00F0)
    m.flip_bit((1, 2, 3), 15)
    assert read_word(m, 1, 3) == 0x80F0
    flat = (1 * CHIP.rows + 2) * CHIP.columns + 3
    m.flip_bit(flat, 15)
    assert m.peek(flat) == 0x00F0
    m.check()


def test_read_latency_extra():
    m = init(new_model(read_latency_extra=1))
    _open(m)
    m.issue("WRITE", ba=0, a=3, dq=0x4321)
    outs = [m.issue("READ", ba=0, a=3)] + m.idle(3)
    assert outs[1][1] == 0 and outs[2] == (0x4321, 0xFFFF)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown rule"):
        new_model(disable=["tFOO"])
    with pytest.raises(ValueError, match="read_latency_extra"):
        new_model(read_latency_extra=-1)
    with pytest.raises(ValueError, match="outside the chip"):
        new_model().flip_bit((4, 0, 0), 0)
    with pytest.raises(ValueError, match="clk_period_ns must be a positive number, not 0"):
        SDRAMModel(chip=CHIP, clk_period_ns=0)
    with pytest.raises(ValueError, match="retention_scale must be positive"):
        new_model(retention_scale=0)
    with pytest.raises(ValueError, match="bit must be in range 0..15"):
        new_model().flip_bit(0, 16)


def test_controller_reset_restarts_trefi():
    m = init(new_model())
    m.idle(int(CHIP.tREFI * 5 / PERIOD))
    m.controller_reset()
    m.idle(int(CHIP.tREFI * 6 / PERIOD))         # 11 intervals, no refresh
    assert not m.violations
    m.issue("PRECHARGE", a=A10)
    m.idle(T.tRP - 1)
    m.issue("LOAD_MODE", a=mode_word(cas_latency=2))
    m.idle(int(CHIP.tREFI * 10.5 / PERIOD))
    assert rules(m) == {"tREFI"}
