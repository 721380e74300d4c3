"""The other end of the wire for netperf-like guests: a TCP_STREAM receiver driven by the virtual clock.

The guest sends data frames; the peer acknowledges every `ack_every` frames (delayed ACKs, RFC 1122
4.2.3.2: at least every second full-sized segment) with a 60-byte frame that arrives `ack_delay_s`
of virtual time later (one-way trip through the host bridge and back; default 20 us, derived: the same
order as a loopback round trip through a host bridge, no figure in the papers). Frames and bytes are
counted; throughput is data bytes over virtual seconds. No TCP is parsed: frames are counted as
segments, which is what the exit pattern depends on.
"""
from __future__ import annotations

from typing import Callable

ACK_FRAME_SIZE = 60


class TcpStreamPeer:
    name = "netpeer"

    def __init__(self, now: Callable[[], int], freq_hz: int, deliver: Callable[[bytes], bool], irq: int,
                 guest_mac: bytes, ack_every: int = 2, ack_delay_s: float = 20e-6):
        self._now = now
        self._deliver = deliver
        self.irq = irq                      # the NIC's line, for EXTERNAL_INTERRUPT accounting
        self._guest_mac = guest_mac
        self.ack_every = max(1, ack_every)
        self.ack_delay = max(1, int(ack_delay_s * freq_hz))
        self._pending: list[int] = []       # due cycles of ACKs in flight, in order
        self._unacked = 0
        self.frames_received = 0
        self.bytes_received = 0
        self.acks_sent = 0
        self.acks_dropped = 0

    def on_transmit(self, frame: bytes) -> None:
        """A frame the guest sent."""
        self.frames_received += 1
        self.bytes_received += len(frame)
        self._unacked += 1
        if self._unacked >= self.ack_every:
            self._unacked = 0
            self._pending.append(self._now() + self.ack_delay)

    def next_event(self) -> int | None:
        return self._pending[0] if self._pending else None

    def advance(self, now: int) -> int:
        delivered = 0
        while self._pending and self._pending[0] <= now:
            self._pending.pop(0)
            ack = self._guest_mac + bytes.fromhex("525400abcdef") + b"\x08\x00" + bytes(ACK_FRAME_SIZE - 14)
            if self._deliver(ack):
                self.acks_sent += 1
                delivered += 1
            else:
                self.acks_dropped += 1
        return delivered
