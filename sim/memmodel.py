"""A byte-array memory behind a :class:`~seedchip.rtl.memport.MemPortSignature`
port, for Amaranth-simulator testbenches (``ctx.set``/``ctx.get``).

Several models may share one ``data`` array (one per port of a unit that
has several DMA clients): each port sees the others' writes at once.
"""

__all__ = ["MemModel"]


class MemModel:
    """The memory side of one port: ``len(data) // wb`` words of ``wb`` bytes,
    in-order responses after a random latency (1..``max_latency``), random
    ``req.ready`` (probability ``ready_p``); a response not taken waits
    (only with ``resp_stall_ok``, else it is an error; set what ``resp.ready``
    depends on before :meth:`step`). A word past the end, or in
    ``err_words`` (a range), answers ``err`` and is neither read nor written.
    Call :meth:`step` once per cycle before ``ctx.tick()``."""

    def __init__(self, port, data, wb, rng, *, ready_p=0.7, max_latency=4, err_words=range(0),
                 resp_stall_ok=False):
        self.port, self.data, self.wb, self.rng = port, data, wb, rng
        self.words = len(data) // wb
        self.ready_p, self.max_latency = ready_p, max_latency
        self.err_words = err_words
        self.resp_stall_ok = resp_stall_ok
        self.pending = []          # (due cycle, rdata, err)
        self.cycle = 0
        self.reads = self.writes = 0

    @property
    def idle(self) -> bool:
        """No response is owed."""
        return not self.pending

    def step(self, ctx):
        """Drive this cycle's inputs and take this cycle's request."""
        req, resp = self.port.req, self.port.resp
        ctx.set(req.ready, int(self.rng.random() < self.ready_p))
        if self.pending and self.pending[0][0] <= self.cycle:
            _, rdata, err = self.pending[0]
            ctx.set(resp.valid, 1)
            ctx.set(resp.payload.rdata, rdata)
            ctx.set(resp.payload.err, err)
            if ctx.get(resp.ready):
                self.pending.pop(0)
            else:
                assert self.resp_stall_ok, "a memory client must always take its responses"
        else:
            ctx.set(resp.valid, 0)
        if ctx.get(req.valid) and ctx.get(req.ready):
            addr = ctx.get(req.payload.addr)
            err = addr >= self.words or addr in self.err_words
            rdata = 0
            if not err:
                lo = addr * self.wb
                if ctx.get(req.payload.we):
                    self.writes += 1
                    wdata, mask = ctx.get(req.payload.wdata), ctx.get(req.payload.mask)
                    for i in range(self.wb):
                        if mask >> i & 1:
                            self.data[lo + i] = (wdata >> (8 * i)) & 0xFF
                else:
                    self.reads += 1
                    rdata = int.from_bytes(bytes(self.data[lo:lo + self.wb]), "little")
            due = max([self.cycle + 1 + int(self.rng.integers(0, self.max_latency))]
                      + [p[0] for p in self.pending[-1:]])
            self.pending.append((due, rdata, int(err)))
        self.cycle += 1
