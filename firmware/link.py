"""Host side of the link: framing, sequence numbers, a window of requests
in flight, timeouts and retransmission (protocol: :mod:`seedchip.link_protocol`).

A transport is anything with ``write(bytes)``, ``read(timeout) -> bytes``
(what has arrived, possibly nothing, after at most ``timeout`` seconds) and
``close()``: :class:`SerialTransport` for a board, the simulated chip's pty
(:mod:`seedchip.firmware.sim`) through the same class.
"""

import time

from ..link_protocol import (IDEMPOTENT, RESPONSE, Cmd, FrameDecoder, Status, encode_frame)

__all__ = ["LinkError", "DeviceError", "SerialTransport", "Link"]


class LinkError(Exception):
    """The link failed: no valid response after the retries, or a broken transport."""


class DeviceError(LinkError):
    """The chip answered with a status other than OK."""

    def __init__(self, cmd, status, detail=""):
        self.cmd = cmd
        self.status = status
        name = cmd.name if isinstance(cmd, Cmd) else f"command {cmd:#x}"
        st = status.name if isinstance(status, Status) else f"status {status}"
        super().__init__(f"{name} failed on the device: {st}{': ' + detail if detail else ''}")


class SerialTransport:
    """A serial port through pyserial (a board's FT231X, or a pty)."""

    def __init__(self, port: str, baud: int = 3_000_000):
        import serial  # noqa: PLC0415  (only this transport needs pyserial)

        try:
            self.port = serial.Serial(port, baudrate=baud, timeout=0)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"cannot open serial port {port!r}: {e}") from None
        self.name = port

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def read(self, timeout: float) -> bytes:
        self.port.timeout = timeout
        first = self.port.read(1)
        if not first:
            return b""
        return first + self.port.read(self.port.in_waiting)

    def close(self) -> None:
        self.port.close()


class _Pending:
    __slots__ = ("cmd", "payload", "index", "sent", "tries")

    def __init__(self, cmd, payload, index):
        self.cmd, self.payload, self.index = cmd, payload, index
        self.sent, self.tries = 0.0, 0


class Link:
    """Requests and responses over a transport.

    ``window`` requests may be in flight (the chip's ``rx_slots``: see the
    flow-control invariant in :mod:`seedchip.link_protocol`). A NAK
    retransmits its request at once; a request without a response after
    ``timeout`` seconds is retransmitted if it is idempotent, else it fails
    (its response may be what was lost). ``retries`` retransmissions at most.
    Responses are matched by ``seq``: duplicates and late ones are dropped
    (counted in :attr:`dropped`).
    """

    def __init__(self, transport, *, window: int = 1, timeout: float = 1.0, retries: int = 3):
        self.transport = transport
        self.window = window
        self.timeout = timeout
        self.retries = retries
        self.decoder = FrameDecoder()
        self.seq = 0
        self.dropped = 0
        self.retransmits = 0

    def request(self, cmd, payload=b"") -> bytes:
        """One command; the response payload after the status byte."""
        return self.pipeline([(cmd, payload)])[0]

    def pipeline(self, requests) -> list:
        """Several commands, ``window`` at a time in flight; their response
        payloads (after the status byte) in order. Raises :class:`DeviceError`
        for the first non-OK status, :class:`LinkError` when retries run out."""
        requests = list(requests)
        results = [None] * len(requests)
        pending: dict[int, _Pending] = {}
        nxt = 0
        while nxt < len(requests) or pending:
            while nxt < len(requests) and len(pending) < self.window:
                cmd, payload = requests[nxt]
                seq = self._next_seq(pending)
                pending[seq] = _Pending(cmd, bytes(payload), nxt)
                self._send(seq, pending[seq])
                nxt += 1
            oldest = min(p.sent for p in pending.values())
            wait = max(0.0, oldest + self.timeout - time.monotonic())
            chunk = self.transport.read(min(wait, 0.5))
            for rcmd, rseq, rpayload in self.decoder.feed(chunk) if chunk else ():
                self._on_frame(rcmd, rseq, rpayload, pending, results)
            now = time.monotonic()
            for seq, p in list(pending.items()):
                if now - p.sent >= self.timeout:
                    if p.cmd not in IDEMPOTENT:
                        raise LinkError(f"{_name(p.cmd)}: no response within {self.timeout} s "
                                        "(not retransmitted: it may have been applied)")
                    self._retransmit(seq, p, "timeout")
        return results

    def _on_frame(self, rcmd, rseq, payload, pending, results):
        p = pending.get(rseq)
        if rcmd == Cmd.NAK.value | RESPONSE:
            if p is not None:
                self._retransmit(rseq, p, "NAK (bad CRC on the way in)")
            return
        if p is None or rcmd != _value(p.cmd) | RESPONSE or not payload:
            self.dropped += 1
            return
        status = payload[0]
        if status != Status.OK.value:
            del pending[rseq]
            try:
                status = Status(status)
            except ValueError:
                pass
            raise DeviceError(p.cmd, status)
        results[p.index] = payload[1:]
        del pending[rseq]

    def _next_seq(self, pending):
        while True:
            self.seq = (self.seq + 1) & 0xFF
            if self.seq not in pending:
                return self.seq

    def _send(self, seq, p):
        self.transport.write(encode_frame(p.cmd, seq, p.payload))
        p.sent = time.monotonic()

    def _retransmit(self, seq, p, why):
        p.tries += 1
        if p.tries > self.retries:
            raise LinkError(f"{_name(p.cmd)}: no valid response after {self.retries} "
                            f"retransmissions (last: {why})")
        self.retransmits += 1
        self._send(seq, p)

    def close(self):
        self.transport.close()


def _value(cmd):
    return cmd.value if isinstance(cmd, Cmd) else cmd


def _name(cmd):
    return cmd.name if isinstance(cmd, Cmd) else f"command {cmd:#x}"
