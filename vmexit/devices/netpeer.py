"""The other end of the wire for netperf-like guests, driven by the virtual clock: a TCP_STREAM
receiver (the guest sends) or sender (the guest receives).

Receiver: the peer acknowledges every `ack_every` frames (delayed ACKs, RFC 1122 4.2.3.2: at least every
second full-sized segment) with a 60-byte frame that arrives `ack_delay_s` of virtual time later
(default 20 us, derived: the order of a round trip through a host bridge; no figure in the papers).
Sender: the peer streams `frame_size`-byte frames at `rate_bps` (the RTL8139's 100 Mb/s by default)
while fewer than `window` frames are unacknowledged; every frame the guest transmits acknowledges
`ack_every` frames. With `wait_for_guest` it starts only when the guest's first frame (its connection
request: netperf connects before the stream flows) arrives, which acknowledges nothing; otherwise it
starts at once, and frames the guest's NIC is not ready for are lost for good (no retransmission).
No TCP is parsed: frames count as segments, which is what the exit pattern depends on.
"""
from __future__ import annotations

from typing import Callable

ACK_FRAME_SIZE = 60


class TcpStreamPeer:
    name = "netpeer"

    def __init__(self, now: Callable[[], int], freq_hz: int, deliver: Callable[[bytes], bool], irq: int,
                 guest_mac: bytes, ack_every: int = 2, ack_delay_s: float = 20e-6, sending: bool = False,
                 frame_size: int = 1514, rate_bps: int = 100_000_000, window: int = 16,
                 wait_for_guest: bool = False):
        self._now = now
        self.sending = sending
        self.frame_size = max(60, min(frame_size, 1514))
        self.frame_cycles = max(1, -(-self.frame_size * 8 * freq_hz // max(1, rate_bps)))
        self.window = max(1, window)
        self._next_send = 0 if sending and not wait_for_guest else None
        self.sent = 0
        self.acked = 0
        self._deliver = deliver
        self.irq = irq                      # the NIC's line, for EXTERNAL_INTERRUPT accounting
        self._guest_mac = guest_mac
        self.ack_every = max(1, ack_every)
        self.ack_delay = max(1, int(ack_delay_s * freq_hz))
        self._pending: list[int] = []       # due cycles of ACKs in flight, in order
        self._unacked = 0
        self.frames_received = 0
        self.bytes_received = 0
        self.frames_sent = 0
        self.frames_dropped = 0

    def on_transmit(self, frame: bytes) -> None:
        """A frame the guest sent."""
        self.frames_received += 1
        self.bytes_received += len(frame)
        if self.sending and self._next_send is None and not self.sent:   # the guest connects
            self._next_send = self._now()
            return
        if self.sending:  # the guest's frames are ACKs of our stream
            self.acked = min(self.sent, self.acked + self.ack_every)
            return
        self._unacked += 1
        if self._unacked >= self.ack_every:
            self._unacked = 0
            self._pending.append(self._now() + self.ack_delay)

    def next_event(self) -> int | None:
        if self.sending:
            return self._next_send if self.sent - self.acked < self.window else None
        return self._pending[0] if self._pending else None

    def _stream(self, now: int) -> int:
        delivered = 0
        while self._next_send is not None and self._next_send <= now and self.sent - self.acked < self.window:
            frame = self._guest_mac + bytes.fromhex("525400abcdef") + b"\x08\x00" + bytes(self.frame_size - 14)
            self.sent += 1
            if self._deliver(frame):
                delivered += 1
                self.frames_sent += 1
            else:
                self.frames_dropped += 1
            self._next_send += self.frame_cycles
        if self._next_send is not None and self._next_send <= now:
            self._next_send = now  # the window was closed: the next frame leaves when it opens
        return delivered

    def advance(self, now: int) -> int:
        if self.sending:
            return self._stream(now)
        delivered = 0
        while self._pending and self._pending[0] <= now:
            self._pending.pop(0)
            ack = self._guest_mac + bytes.fromhex("525400abcdef") + b"\x08\x00" + bytes(ACK_FRAME_SIZE - 14)
            if self._deliver(ack):
                self.frames_sent += 1
                delivered += 1
            else:
                self.frames_dropped += 1
        return delivered
