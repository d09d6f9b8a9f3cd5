"""Worst paths of a placed, unrouted ECP5 design, estimated from placement.

nextpnr prints no path before routing, and routing the whole chip takes
hours; this reads the netlist nextpnr writes after placement (``nextpnr-ecp5
... --no-route --write placed.json``, what :mod:`seedchip.boards.ooc`
``--no-route`` keeps as ``placed<seed>.json``) and walks its combinational
cells for the longest register-to-register paths.

An estimate, for ranking paths and seeing where they go, not a timing
sign-off: a net's delay is the shape of nextpnr-ecp5's own placement
estimate, 120 ps x (6 + 2 min(d, 5) + max(d - 5, 0)) per axis for a
distance of d tiles (none for the dedicated carry and wide-mux inputs), a
LUT 0.35 ns, a flip-flop's clock to output 0.45 ns, a block RAM without
its output register 5.8 ns. It comes out slower than nextpnr's figure; the
order of the paths is what it is for.

    python -m seedchip.boards.placed_paths build/ooc/chip/placed1.json --paths 20
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys

__all__ = ["analyse", "wire_delay"]

COMB = ("TRELLIS_COMB", "CCU2C", "LUT4", "PFUMX", "L6MUX21")
#: combinational inputs of a packed TRELLIS_COMB (a DPRAM's write side is not)
COMB_INPUTS = ("A", "B", "C", "D", "M", "FCI", "FXA", "FXB", "SEL", "A1", "B1", "C1", "D1")
#: inputs reached over dedicated wires (carry chain, wide multiplexers)
DEDICATED = ("FCI", "FXA", "FXB")


def wire_delay(a, b):
    """Estimated delay (ns) of a net from tile ``a`` to tile ``b`` ((x, y))."""
    if a is None or b is None:
        return 0.72
    dx, dy = abs(a[0] - b[0]), abs(a[1] - b[1])
    return 0.120 * (6 + 2 * (min(dx, 5) + min(dy, 5)) + max(dx - 5, 0) + max(dy - 5, 0))


def _source_delay(cell):
    t = cell["type"]
    if t == "TRELLIS_FF":
        return 0.45
    if t == "DP16KD":
        return 1.5 if "OUTREG" in str(cell.get("parameters", {}).get("REGMODE_A", "")) else 5.8
    if t in ("MULT18X18D", "ALU54B"):
        return 1.6
    return 0.5


def _cell_delay(cell, pin):
    if cell["type"] == "TRELLIS_COMB":
        if pin == "FCI":
            return 0.06
        if pin in ("FXA", "FXB"):
            return 0.1
        if pin in ("SEL", "M"):
            return 0.25
    return 0.35


def _is_comb_input(cell, port):
    if cell["type"] == "TRELLIS_COMB":
        return port in COMB_INPUTS
    return cell["type"] in COMB


def analyse(netlist, *, paths=10):
    """``{"worst_ns", "endpoints", "histogram", "paths"}`` of a placed
    netlist (the parsed JSON). ``paths``: how many worst paths to return,
    one per (start cell, end cell's block); each is ``{"ns", "start",
    "end", "hops": [{"net", "tiles"}]}``."""
    tops = [m for m, d in netlist["modules"].items() if d.get("attributes", {}).get("top")]
    mod = netlist["modules"][(tops or list(netlist["modules"]))[0]]
    cells = mod["cells"]

    def loc(name):
        m = re.match(r"X(\d+)/Y(\d+)/", cells[name].get("attributes", {}).get("NEXTPNR_BEL", ""))
        return (int(m.group(1)), int(m.group(2))) if m else None

    netname = {}
    for name, d in mod["netnames"].items():
        for bit in d["bits"]:
            if isinstance(bit, int):
                old = netname.get(bit)
                if old is None or (old.startswith("$"), len(old)) > (name.startswith("$"), len(name)):
                    netname[bit] = name
    drivers = {}
    for name, c in cells.items():
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "output":
                for bit in bits:
                    if isinstance(bit, int):
                        drivers[bit] = (name, port)
    comb = {name for name, c in cells.items() if c["type"] in COMB}

    def constant(bit):
        return "PACKER_" in netname.get(bit, "") or cells[drivers[bit][0]]["type"] in ("VCC", "GND")

    def driven_inputs(c, comb_side):
        """``(port, bit, driver cell)`` of ``c``'s driven, non-constant input
        bits: its combinational inputs (``comb_side``) or the others."""
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) != "input" or _is_comb_input(c, port) != comb_side:
                continue
            for bit in bits:
                if isinstance(bit, int) and bit in drivers and not constant(bit):
                    yield port, bit, drivers[bit][0]

    arrival = {}     # comb cell -> (ns, (driver cell, input pin, bit))

    def arrive(name):
        # iterative depth-first walk: the netlist's combinational depth can
        # exceed Python's recursion limit along carry chains
        stack = [name]
        while stack:
            cur = stack[-1]
            if cur in arrival:
                stack.pop()
                continue
            c, here = cells[cur], loc(cur)
            pending, best, via = [], 0.0, None
            for port, bit, src in driven_inputs(c, True):
                if src in comb and src not in arrival:
                    pending.append(src)
                    continue
                near = port in DEDICATED or (port == "M" and loc(src) == here)
                t = (launch(src) + (0.0 if near else wire_delay(loc(src), here))
                     + _cell_delay(c, port))
                if t > best:
                    best, via = t, (src, port, bit)
            pending = [p for p in pending if p not in stack]   # a loop: cut it
            if pending:
                stack.extend(pending)
                continue
            arrival[cur] = (best, via)
            stack.pop()

    def launch(src):
        """When a value leaves ``src``: its arrival, or a register's clock to output."""
        if src in comb:
            arrive(src)
            return arrival[src][0]
        return _source_delay(cells[src])

    # endpoints: every input that is not combinational (a register's, a
    # DPRAM's write side)
    ends = [(launch(src) + wire_delay(loc(src), loc(name)) + 0.15, name, port, bit)
            for name, c in cells.items() for port, bit, src in driven_inputs(c, False)]
    ends.sort(key=lambda e: -e[0])
    hist = collections.Counter(int(e[0]) for e in ends)
    out = {"worst_ns": round(ends[0][0], 2) if ends else 0.0, "endpoints": len(ends),
           "histogram": {k: hist[k] for k in sorted(hist)}, "paths": []}
    seen = set()
    for t, name, port, bit in ends:
        if len(out["paths"]) >= paths:
            break
        steps = [(name, bit)]
        src = drivers[bit][0]
        while src in comb and arrival[src][1] is not None:
            steps.append((src, arrival[src][1][2]))
            src = arrival[src][1][0]
        key = (src, netname.get(bit, "?").split(".")[0])
        if key in seen:
            continue
        seen.add(key)
        hops, prev = [], loc(src)
        for cell, b in reversed(steps):
            here = loc(cell)
            tiles = abs(here[0] - prev[0]) + abs(here[1] - prev[1]) if here and prev else None
            hops.append({"net": netname.get(b, "?"), "tiles": tiles})
            prev = here
        out["paths"].append({"ns": round(t, 2), "start": f"{cells[src]['type']} {loc(src)}",
                             "end": f"{cells[name]['type']}.{port} {loc(name)}", "hops": hops})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("placed", help="nextpnr's --write JSON of a placed design")
    ap.add_argument("--paths", type=int, default=10)
    ap.add_argument("--json", metavar="FILE", help="also write the result here")
    args = ap.parse_args(argv)
    try:
        with open(args.placed) as f:
            netlist = json.load(f)
    except (OSError, ValueError) as e:
        print(f"placed_paths: cannot read {args.placed}: {e}", file=sys.stderr)
        return 2
    res = analyse(netlist, paths=args.paths)
    print(f"{res['endpoints']} endpoints; worst {res['worst_ns']} ns (estimated from placement)")
    print("endpoints per ns of arrival: " + ", ".join(f"{k}: {v}" for k, v in res["histogram"].items()))
    for p in res["paths"]:
        print(f"\n{p['ns']} ns: {p['start']} -> {p['end']}")
        for h in p["hops"]:
            tiles = "?" if h["tiles"] is None else h["tiles"]
            print(f"  {tiles:>4} tiles  {h['net']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
