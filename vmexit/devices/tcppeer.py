"""A host on the wire that answers ARP, ICMP echo and TCP as a real host would, driven by the virtual
clock: the other end of the RTL8139 for a guest with a real network stack (`--net-peer tcp`; the
bundled netperf guests keep netpeer.py, which counts frames as segments and parses nothing).

Addresses: IPv4 10.0.2.2 and MAC 52:55:0a:00:02:02, the host of QEMU's user-mode network, whose
emulated hosts have the MAC 52:55 followed by their IPv4 address (QEMU slirp/src/slirp.c,
special_ethaddr): a guest set up as under `qemu -nic user` (`ifconfig eth0 10.0.2.15 ...`, the host at
10.0.2.2) talks to this peer unchanged.

What it answers (frames to its MAC or broadcast; anything else is counted as ignored):
- ARP (RFC 826): a request for 10.0.2.2, broadcast or unicast (Linux's reachability probes are unicast),
  gets a reply, and the sender's address is learnt. Sending to an address it has not learnt, the peer
  ARPs first: one request per second at most (Linux's neigh retrans_time), up to ARP_HOLD packets held.
- ICMP (RFC 792): an echo request gets its echo reply; a UDP datagram gets "port unreachable".
- TCP (RFC 9293). Port 5001 (iperf's) is a discard sink: it takes every byte in order and closes when the
  guest closes (its FIN is answered by FIN+ACK). Port 5002 is a source: after the handshake it sends
  `source_bytes` (1 MiB) of RFC 864 chargen's printable characters, then FIN. Any other port: RST
  (RFC 9293 3.10.7.1). The SYN-ACK carries one option, MSS 1460 (the 1500-byte Ethernet MTU less 40
  bytes of headers); the guest's window scaling, SACK and timestamps are not echoed, so they are off
  (RFC 7323, RFC 2018), and every window is a plain 16-bit one: the sink advertises 65535 bytes (it
  drains at once). Receiving: in-order data only (a segment past a hole is dropped and answered with a
  duplicate ACK at once, RFC 5681 4.2); an ACK per `ack_every` (2) data segments or DELACK_S after the
  first unacknowledged one (RFC 1122 4.2.3.2; Linux's TCP_DELACK_MIN, 40 ms). Sending: within
  min(the guest's window, cwnd); cwnd as RFC 5681 (initial 10 segments, RFC 6928 / Linux's
  TCP_INIT_CWND; slow start, congestion avoidance), fast retransmit on the third duplicate ACK with
  NewReno's partial-ACK retransmissions (RFC 6582); retransmission timeout 1 s until the handshake is
  acknowledged (RFC 6298 2.1), then 200 ms (Linux's TCP_RTO_MIN: what its estimator gives on a LAN),
  doubled at each timeout up to 120 s, the connection reset after 15 (Linux's tcp_retries2); a closed
  window is probed at the timeout. ISN: ISN + ISN_STEP per connection accepted before (fixed: runs repeat).
- Checksums: the IPv4 header's, ICMP's, and TCP's and UDP's with the pseudo header are computed on send
  and verified on receipt; a frame failing one is dropped and counted (bad_checksums).

Time: a frame the guest transmits reaches the peer `reply_delay_s` later (20 us by default: netpeer.py's
acknowledgement delay, the order of a round trip through a host bridge; no figure in the papers), and
the peer answers at once. Frames leave one after another at `rate_bps` (the RTL8139's 100 Mb/s), each
taking (max(frame, 60) + 24) bytes of wire time: preamble and start delimiter 8, FCS 4, inter-frame
gap 12 (IEEE 802.3). A frame the NIC cannot take (receiver off, ring full) is lost, as on a wire.

Interface (as netpeer.TcpStreamPeer, so pc.py picks either): on_transmit(frame) for the guest's frames,
next_event() -> cycle | None and advance(now) -> frames delivered into the NIC, `irq` the NIC's line;
results() the counters for the run's meta.
"""
from __future__ import annotations

import struct
from collections import deque
from dataclasses import asdict, dataclass
from functools import partial
from typing import Callable

PEER_MAC = bytes.fromhex("52550a000202")
PEER_IP = bytes((10, 0, 2, 2))
BROADCAST = b"\xff" * 6
SINK_PORT, SOURCE_PORT = 5001, 5002
SOURCE_BYTES = 1 << 20
ISN = 0x10000000                 # the first connection's initial sequence number
ISN_STEP = 0x01000000            # ... and each later connection's offset from the one before
MSS = 1460                       # 1500-byte Ethernet MTU - 20 (IPv4) - 20 (TCP), RFC 9293 3.7.1
DEFAULT_MSS = 536                # what a guest that sends no MSS option takes (RFC 9293 3.7.1)
RCV_WINDOW = 65535               # the largest window without window scaling (not offered)
DELACK_S = 0.040                 # Linux's TCP_DELACK_MIN (include/net/tcp.h, HZ/25)
RTO_INIT_S, RTO_MIN_S, RTO_MAX_S = 1.0, 0.2, 120.0   # RFC 6298 2.1; Linux's TCP_RTO_MIN, TCP_RTO_MAX
MAX_RETRIES = 15                 # Linux's net.ipv4.tcp_retries2
INIT_CWND = 10                   # segments (RFC 6928)
WIRE_OVERHEAD = 24               # preamble + SFD 8, FCS 4, inter-frame gap 12 bytes (IEEE 802.3)
MIN_FRAME = 60                   # Ethernet's minimum frame without FCS: shorter ones are padded
ARP_RETRY_S = 1.0                # Linux's neigh retrans_time
ARP_HOLD = 16                    # packets held while their destination resolves
TTL = 64

ETH_IPV4, ETH_ARP = 0x0800, 0x0806
PROTO_ICMP, PROTO_TCP, PROTO_UDP = 1, 6, 17
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_M32 = 0xFFFFFFFF
_CHARGEN = bytes(range(32, 127)) * (MSS // 95 + 2)   # RFC 864's 95 printable characters, repeated


# the wire formats ------------------------------------------------------------------------------------
def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum of 16-bit words.
    Over data that holds a correct checksum it is 0."""
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return struct.pack("!4s4sBBH", src, dst, 0, proto, length)


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, dont_fragment: bool) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF,
                         0x4000 if dont_fragment else 0, TTL, proto, 0, src, dst)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
        payload: bytes = b"", options: bytes = b"") -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & _M32, ack & _M32, (20 + len(options)) // 4 << 4,
                         flags, window, 0, 0) + options
    csum = checksum(_pseudo(src, dst, PROTO_TCP, len(header) + len(payload)) + header + payload)
    return header[:16] + struct.pack("!H", csum) + header[18:] + payload


def _with_checksum(message: bytes, at: int) -> bytes:
    return message[:at] + struct.pack("!H", checksum(message)) + message[at + 2:]


def _arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, op, sha, spa, tha, tpa)


@dataclass(frozen=True)
class Segment:
    """A TCP segment as received (its checksum already verified)."""
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    mss: int | None              # the MSS option, if sent

    @property
    def length(self) -> int:
        """Sequence space taken: the payload, and one for each of SYN and FIN."""
        return len(self.payload) + bool(self.flags & SYN) + bool(self.flags & FIN)


def parse_tcp(data: bytes) -> Segment | None:
    """A segment from a TCP header and payload, or None if the header is malformed."""
    if len(data) < 20:
        return None
    sport, dport, seq, ack, offset, flags, window = struct.unpack_from("!HHIIBBH", data)
    hlen = (offset >> 4) * 4
    if hlen < 20 or hlen > len(data):
        return None
    mss, i = None, 20
    while i < hlen and data[i] != 0:                  # options: kind 0 ends them, kind 1 is one byte
        if data[i] == 1:
            i += 1
            continue
        if i + 1 >= hlen or data[i + 1] < 2:
            return None
        if data[i] == 2 and data[i + 1] == 4 and i + 4 <= hlen:
            mss = struct.unpack_from("!H", data, i + 2)[0]
        i += data[i + 1]
    return Segment(sport, dport, seq, ack, flags & 0x3F, window, bytes(data[hlen:]), mss)


def _rel(value: int, base: int) -> int:
    """A 32-bit sequence number as a signed offset from base (sequence arithmetic, RFC 9293 3.4)."""
    d = (value - base) & _M32
    return d - (1 << 32) if d >= 1 << 31 else d


# the state of one connection ------------------------------------------------------------------------
@dataclass
class Connection:
    """One TCP connection. Sequence numbers are offsets: ours from iss (0 the SYN, 1.. the data, then the
    FIN), the guest's from irs; so they never wrap here, and are only made 32-bit on the wire."""
    remote_ip: bytes
    remote_port: int
    local_port: int
    iss: int
    irs: int
    mss: int                     # the most we put in one segment
    total: int                   # bytes we send (0: a sink)
    snd_wnd: int                 # the guest's window
    cwnd: int
    rto: int                     # cycles
    snd_una: int = 0
    snd_nxt: int = 0
    snd_max: int = 0
    wl1: int = 0                 # the guest's seq and our ack of the segment that last set snd_wnd
    wl2: int = 0
    ssthresh: int = 1 << 62
    recover: int | None = None   # in fast recovery: the highest sequence sent when it began (RFC 6582)
    dupacks: int = 0
    retries: int = 0
    force: bool = False          # send one segment whatever the windows (a retransmission or a probe)
    rcv_nxt: int = 1
    fin_received: bool = False
    unacked: int = 0             # data segments received since our last ACK
    ack_due: int | None = None   # when an ACK is owed
    pump_at: int | None = None   # when there may be something to send (from then, as the wire frees)
    rto_at: int | None = None
    closed: bool = False
    reset: bool = False
    bytes_received: int = 0
    bytes_sent: int = 0

    @property
    def data_end(self) -> int:
        return 1 + self.total

    @property
    def state(self) -> str:
        """The RFC 9293 state name, for reports and tests."""
        if self.closed:
            return "CLOSED"
        if self.snd_una == 0:
            return "SYN-RECEIVED"
        fin_sent, fin_acked = self.snd_max > self.data_end, self.snd_una > self.data_end
        if self.fin_received:
            return "LAST-ACK" if fin_sent else "CLOSE-WAIT"
        if fin_sent:
            return "FIN-WAIT-2" if fin_acked else "FIN-WAIT-1"
        return "ESTABLISHED"

    def summary(self) -> dict:
        return {"port": self.local_port, "guest_port": self.remote_port, "state": self.state,
                "bytes_received": self.bytes_received, "bytes_sent": self.bytes_sent}


@dataclass
class Counters:
    frames_received: int = 0         # frames the guest transmitted
    frames_ignored: int = 0          # not for us, or of a kind we do not speak
    bad_checksums: int = 0
    frames_sent: int = 0             # frames the NIC took
    frames_dropped: int = 0          # frames the NIC could not take
    arp_replies: int = 0
    arp_requests: int = 0
    icmp_echo_replies: int = 0
    icmp_unreachable: int = 0
    connections: int = 0
    segments_received: int = 0
    segments_sent: int = 0
    bytes_received: int = 0          # TCP payload taken in order
    bytes_sent: int = 0              # TCP payload sent, retransmissions not counted
    acks_sent: int = 0               # segments with no data, SYN or FIN
    out_of_order: int = 0
    retransmissions: int = 0
    fast_retransmits: int = 0
    timeouts: int = 0
    resets_sent: int = 0
    resets_received: int = 0


# the host --------------------------------------------------------------------------------------------
class TcpPeer:
    name = "tcppeer"

    def __init__(self, now: Callable[[], int], freq_hz: int, deliver: Callable[[bytes], bool], irq: int,
                 reply_delay_s: float = 20e-6, rate_bps: int = 100_000_000, ack_every: int = 2,
                 sink_port: int = SINK_PORT, source_port: int = SOURCE_PORT, source_bytes: int = SOURCE_BYTES):
        self._now = now
        self.freq_hz = freq_hz
        self._deliver = deliver
        self.irq = irq                      # the NIC's line, for EXTERNAL_INTERRUPT accounting
        self.rate_bps = max(1, rate_bps)
        self.reply_delay = max(1, int(reply_delay_s * freq_hz))
        self.ack_every = max(1, ack_every)
        self.services = {sink_port: 0, source_port: max(0, source_bytes)}   # port -> bytes it sends
        self.counters = Counters()
        self.connections: dict[tuple[bytes, int, int], Connection] = {}
        self._arp_cache: dict[bytes, bytes] = {}
        self._arp_asked: dict[bytes, int] = {}          # IP -> when we last asked for it
        self._held: deque[tuple[bytes, bytes]] = deque()  # (IP, packet) waiting for its ARP reply
        self._inputs: deque[tuple[int, bytes]] = deque()  # the guest's frames, by when they reach us
        self._wire: deque[tuple[int, bytes]] = deque()    # our frames, by when they reach the NIC
        self._link_free = 0
        self._ident = 0

    def _cycles(self, seconds: float) -> int:
        return max(1, int(seconds * self.freq_hz))

    def results(self) -> dict:
        return {"mac": PEER_MAC.hex(":"), "ip": ".".join(map(str, PEER_IP)), **asdict(self.counters),
                "tcp": [c.summary() for c in self.connections.values()]}

    # the clock's interface -------------------------------------------------------------------------
    def on_transmit(self, frame: bytes) -> None:
        """A frame the guest sent: it reaches the peer reply_delay later."""
        self.counters.frames_received += 1
        self._inputs.append((self._now() + self.reply_delay, bytes(frame)))

    def next_event(self) -> int | None:
        return self._next()[0]

    def advance(self, now: int) -> int:
        """Everything due by now, in time order; returns the frames delivered into the NIC."""
        delivered = 0
        while True:
            due, action = self._next()
            if due is None or due > now:
                return delivered
            delivered += action(due)

    def _next(self) -> tuple[int | None, Callable[[int], int] | None]:
        """The earliest event and its handler; at one time: deliveries, arrivals, timeouts, sends."""
        best, action = None, None
        candidates = [((self._wire[0][0], 0, 0), self._deliver_head) if self._wire else None,
                      ((self._inputs[0][0], 1, 0), self._arrive) if self._inputs else None]
        for i, c in enumerate(self.connections.values()):
            if c.rto_at is not None:
                candidates.append(((c.rto_at, 2, i), partial(self._timeout, c)))
            out = self._output_time(c)
            if out is not None:
                candidates.append(((out, 3, i), partial(self._output, c)))
        for candidate in candidates:
            if candidate is not None and (best is None or candidate[0] < best):
                best, action = candidate
        return (None, None) if best is None else (best[0], action)

    def _deliver_head(self, t: int) -> int:
        _, frame = self._wire.popleft()
        if self._deliver(frame):
            self.counters.frames_sent += 1
            return 1
        self.counters.frames_dropped += 1
        return 0

    def _arrive(self, t: int) -> int:
        _, frame = self._inputs.popleft()
        self._frame_in(frame, t)
        return 0

    # link layer --------------------------------------------------------------------------------------
    def _emit(self, frame: bytes, t: int) -> None:
        """Queue a frame on the wire: it leaves when the wire is free, at rate_bps."""
        frame = frame + bytes(MIN_FRAME - len(frame)) if len(frame) < MIN_FRAME else frame
        at = max(t, self._link_free)
        self._wire.append((at, frame))
        self._link_free = at + -(-(len(frame) + WIRE_OVERHEAD) * 8 * self.freq_hz // self.rate_bps)

    def _frame_in(self, frame: bytes, t: int) -> None:
        kind = struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else None
        handler = {ETH_ARP: self._arp_in, ETH_IPV4: self._ipv4_in}.get(kind)
        if handler is None or frame[:6] not in (PEER_MAC, BROADCAST):
            self.counters.frames_ignored += 1
            return
        handler(frame, t)

    def _arp_in(self, frame: bytes, t: int) -> None:
        if len(frame) < 42 or frame[14:20] != b"\x00\x01\x08\x00\x06\x04" or frame[38:42] != PEER_IP:
            self.counters.frames_ignored += 1
            return
        op, sha, spa = struct.unpack_from("!H", frame, 20)[0], frame[22:28], frame[28:32]
        if spa != bytes(4):                            # an address probe (RFC 5227) teaches nothing
            self._arp_cache[spa] = sha
        if op == 1:
            self._emit(sha + PEER_MAC + struct.pack("!H", ETH_ARP) + _arp(2, PEER_MAC, PEER_IP, sha, spa), t)
            self.counters.arp_replies += 1
        self._release_held(spa, t)

    def _release_held(self, ip: bytes, t: int) -> None:
        if ip not in self._arp_cache:
            return
        waiting = [p for dest, p in self._held if dest == ip]
        self._held = deque((dest, p) for dest, p in self._held if dest != ip)
        for packet in waiting:
            self._emit(self._arp_cache[ip] + PEER_MAC + struct.pack("!H", ETH_IPV4) + packet, t)

    def _ip_out(self, dst: bytes, proto: int, payload: bytes, t: int) -> None:
        packet = ipv4(PEER_IP, dst, proto, payload, self._ident, dont_fragment=proto == PROTO_TCP)
        self._ident += 1
        mac = self._arp_cache.get(dst)
        if mac is not None:
            self._emit(mac + PEER_MAC + struct.pack("!H", ETH_IPV4) + packet, t)
            return
        if len(self._held) >= ARP_HOLD:                # the oldest held packet gives way, as Linux's
            self._held.popleft()
        self._held.append((dst, packet))
        asked = self._arp_asked.get(dst)
        if asked is None or t - asked >= self._cycles(ARP_RETRY_S):
            self._arp_asked[dst] = t
            self._emit(BROADCAST + PEER_MAC + struct.pack("!H", ETH_ARP) + _arp(1, PEER_MAC, PEER_IP, bytes(6), dst), t)
            self.counters.arp_requests += 1

    # network layer -----------------------------------------------------------------------------------
    def _ipv4_in(self, frame: bytes, t: int) -> None:
        packet = frame[14:]
        if len(packet) < 20 or packet[0] >> 4 != 4:
            self.counters.frames_ignored += 1
            return
        ihl, total = (packet[0] & 0x0F) * 4, struct.unpack_from("!H", packet, 2)[0]
        if ihl < 20 or not ihl <= total <= len(packet):
            self.counters.frames_ignored += 1
            return
        if checksum(packet[:ihl]):
            self.counters.bad_checksums += 1
            return
        packet = packet[:total]                        # without the Ethernet padding
        handler = {PROTO_ICMP: self._icmp_in, PROTO_TCP: self._tcp_in, PROTO_UDP: self._udp_in}.get(packet[9])
        fragment = struct.unpack_from("!H", packet, 6)[0] & 0x3FFF   # MF or an offset: not reassembled
        if handler is None or packet[16:20] != PEER_IP or fragment:
            self.counters.frames_ignored += 1
            return
        handler(packet[12:16], packet, ihl, t)

    def _icmp_in(self, src: bytes, packet: bytes, ihl: int, t: int) -> None:
        body = packet[ihl:]
        if len(body) >= 8 and checksum(body):
            self.counters.bad_checksums += 1
            return
        if len(body) < 8 or body[0] != 8 or body[1] != 0:   # only echo requests are answered
            self.counters.frames_ignored += 1
            return
        self._ip_out(src, PROTO_ICMP, _with_checksum(b"\x00\x00\x00\x00" + body[4:], 2), t)
        self.counters.icmp_echo_replies += 1

    def _udp_in(self, src: bytes, packet: bytes, ihl: int, t: int) -> None:
        body = packet[ihl:]
        if len(body) < 8:
            self.counters.frames_ignored += 1
            return
        if struct.unpack_from("!H", body, 6)[0] and checksum(_pseudo(src, PEER_IP, PROTO_UDP, len(body)) + body):
            self.counters.bad_checksums += 1           # (a zero UDP checksum means none was computed)
            return
        # no UDP service here: port unreachable, quoting the IP header and 8 bytes (RFC 792, RFC 1122 3.2.2.1)
        self._ip_out(src, PROTO_ICMP, _with_checksum(struct.pack("!BBHI", 3, 3, 0, 0) + packet[:ihl + 8], 2), t)
        self.counters.icmp_unreachable += 1

    # TCP: arrivals -----------------------------------------------------------------------------------
    def _tcp_in(self, src: bytes, packet: bytes, ihl: int, t: int) -> None:
        body = packet[ihl:]
        if checksum(_pseudo(src, PEER_IP, PROTO_TCP, len(body)) + body):
            self.counters.bad_checksums += 1
            return
        seg = parse_tcp(body)
        if seg is None:
            self.counters.frames_ignored += 1
            return
        self.counters.segments_received += 1
        conn = self.connections.get((src, seg.sport, seg.dport))
        if conn is not None and not conn.reset and not (seg.flags & SYN and conn.closed):   # (ports are reused)
            self._segment_arrives(conn, seg, t)
        elif seg.dport not in self.services or seg.flags & (ACK | RST):
            self._refuse(src, seg, t)                  # no connection here (RFC 9293 3.10.7.1, 3.10.7.2)
        elif seg.flags & SYN:
            self._accept(src, seg, t)
        else:                                          # LISTEN drops anything else
            self.counters.frames_ignored += 1

    def _refuse(self, src: bytes, seg: Segment, t: int) -> None:
        """RST for a segment no connection takes (RFC 9293 3.10.7.1); never for a RST."""
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            seq, ack, flags = seg.ack, 0, RST
        else:
            seq, ack, flags = 0, seg.seq + seg.length, RST | ACK
        self._ip_out(src, PROTO_TCP, tcp(PEER_IP, src, seg.dport, seg.sport, seq, ack, flags, 0), t)
        self.counters.resets_sent += 1
        self.counters.segments_sent += 1

    def _accept(self, src: bytes, seg: Segment, t: int) -> None:
        mss = min(MSS, seg.mss or DEFAULT_MSS)
        conn = Connection(src, seg.sport, seg.dport, (ISN + self.counters.connections * ISN_STEP) & _M32, seg.seq,
                          mss, self.services[seg.dport], seg.window, INIT_CWND * mss, self._cycles(RTO_INIT_S))
        conn.pump_at = t                               # the SYN-ACK
        self.connections[(src, seg.sport, seg.dport)] = conn
        self.counters.connections += 1

    def _segment_arrives(self, c: Connection, seg: Segment, t: int) -> None:
        """RFC 9293 3.10.7.4, for a connection past LISTEN."""
        seq, ack = _rel(seg.seq, c.irs), _rel(seg.ack, c.iss)
        if seg.flags & RST:
            if c.rcv_nxt <= seq < c.rcv_nxt + RCV_WINDOW and not c.closed:
                c.closed = c.reset = True
                c.rto_at = c.ack_due = c.pump_at = None
                self.counters.resets_received += 1
            return
        if seg.flags & SYN:
            if seq == 0 and c.snd_una == 0:            # the SYN again: our SYN-ACK was lost
                c.snd_nxt, c.pump_at = 0, t
            else:                                      # a SYN inside the connection: challenge ACK (RFC 5961)
                c.ack_due = t
            return
        if not seg.flags & ACK:
            return
        if not self._acceptable(c, seq, seg):
            c.ack_due = t                              # old or beyond the window: say where we are
            return
        if self._ack_arrives(c, seq, ack, seg, t):
            self._data_arrives(c, seq, seg, t)

    @staticmethod
    def _acceptable(c: Connection, seq: int, seg: Segment) -> bool:
        length = len(seg.payload) + bool(seg.flags & FIN)
        if length == 0:
            return c.rcv_nxt <= seq < c.rcv_nxt + RCV_WINDOW or seq == c.rcv_nxt
        return seq < c.rcv_nxt + RCV_WINDOW and seq + length > c.rcv_nxt

    def _ack_arrives(self, c: Connection, seq: int, ack: int, seg: Segment, t: int) -> bool:
        """The ACK field and the window; False if the segment goes no further."""
        if c.snd_una == 0 and not 0 < ack <= c.snd_max:   # SYN-RECEIVED: it must acknowledge our SYN
            self._refuse(c.remote_ip, seg, t)
            return False
        if ack > c.snd_max:                            # acknowledges what was never sent
            c.ack_due = t
            return False
        duplicate = (ack == c.snd_una < c.snd_max and not seg.payload and not seg.flags & FIN
                     and seg.window == c.snd_wnd)
        if ack > c.snd_una:
            self._new_ack(c, ack, t)
        elif duplicate:
            self._duplicate_ack(c, t)
        if c.wl1 < seq or (c.wl1 == seq and c.wl2 <= ack):
            c.snd_wnd, c.wl1, c.wl2 = seg.window, seq, ack
        c.retries = 0
        if self._next_segment(c) is not None:
            c.pump_at = t if c.pump_at is None else c.pump_at
        elif c.snd_max == c.snd_una and c.snd_nxt < c.data_end and c.rto_at is None:
            c.rto_at = t + c.rto                       # data waits on a closed window: probe it then
        return True

    def _new_ack(self, c: Connection, ack: int, t: int) -> None:
        acked, c.snd_una = ack - c.snd_una, ack
        c.snd_nxt = max(c.snd_nxt, ack)
        c.dupacks = 0
        c.rto = self._cycles(RTO_MIN_S)                # past the handshake; a backoff ends (RFC 6298 5.7)
        if c.recover is not None and ack < c.recover:  # a partial ACK: the next hole goes at once
            self._retransmit(c, t)
        elif c.recover is not None:
            c.recover = None
        elif acked < ack:                              # data acknowledged (not the handshake's ACK):
            slow_start = c.cwnd < c.ssthresh           # slow start or congestion avoidance (RFC 5681 3.1)
            c.cwnd += min(acked, c.mss) if slow_start else max(1, c.mss * c.mss // c.cwnd)
        c.rto_at = t + c.rto if c.snd_max > c.snd_una else None
        self._check_closed(c)

    @staticmethod
    def _check_closed(c: Connection) -> None:
        """Both FINs are through: CLOSED (after LAST-ACK) or TIME-WAIT, which is kept, so a FIN sent again
        is acknowledged again, but reported as closed."""
        if c.fin_received and c.snd_una > c.data_end:
            c.closed, c.rto_at, c.pump_at = True, None, None

    def _duplicate_ack(self, c: Connection, t: int) -> None:
        c.dupacks += 1
        if c.dupacks == 3 and c.recover is None:       # fast retransmit (RFC 5681 3.2)
            c.ssthresh = max((c.snd_max - c.snd_una) // 2, 2 * c.mss)
            c.cwnd, c.recover = c.ssthresh, c.snd_max
            self.counters.fast_retransmits += 1
            self._retransmit(c, t)

    def _retransmit(self, c: Connection, t: int) -> None:
        """The segment at snd_una again, now, outside the send windows."""
        end = c.snd_nxt
        c.snd_nxt, c.force = c.snd_una, True
        self._send_next(c, t)
        c.snd_nxt = max(end, c.snd_nxt)

    def _data_arrives(self, c: Connection, seq: int, seg: Segment, t: int) -> None:
        payload = seg.payload[max(0, c.rcv_nxt - seq):]   # what we have had already, cut off
        seq = max(seq, c.rcv_nxt)
        if seq > c.rcv_nxt:                            # past a hole: no reassembly, a duplicate ACK at once
            self.counters.out_of_order += 1
            c.ack_due = t
            return
        taken = payload[:RCV_WINDOW]
        if taken:
            c.rcv_nxt += len(taken)
            c.bytes_received += len(taken)
            self.counters.bytes_received += len(taken)
            c.unacked += 1
        if seg.flags & FIN and len(taken) == len(payload) and not c.fin_received:
            c.rcv_nxt += 1                             # the guest closed: so does the application here
            c.fin_received = True
            c.ack_due, c.pump_at = t, t
            self._check_closed(c)
        elif taken and c.unacked >= self.ack_every:
            c.ack_due = t
        elif taken and c.ack_due is None:
            c.ack_due = t + self._cycles(DELACK_S)

    # TCP: sending ------------------------------------------------------------------------------------
    def _next_segment(self, c: Connection) -> tuple[int, int, int] | None:
        """What goes at snd_nxt: (offset, flags, payload length), or None (nothing, or windows closed)."""
        if c.snd_nxt == 0:
            return 0, SYN | ACK, 0
        if c.snd_una == 0 or c.closed:
            return None
        end = c.data_end
        usable = c.snd_una + min(c.snd_wnd, c.cwnd) - c.snd_nxt
        usable = max(usable, 1) if c.force else usable
        if c.snd_nxt < end:
            want = min(c.mss, end - c.snd_nxt)
            n = min(want, usable)
            if n <= 0 or (n < want and c.snd_nxt > c.snd_una):   # sender SWS avoidance (RFC 9293 3.8.6.2.1)
                return None
            return c.snd_nxt, ACK | (PSH if c.snd_nxt + n == end else 0), n
        if c.snd_nxt == end and (c.total or c.fin_received) and usable > 0:   # the FIN takes window too
            return end, FIN | ACK, 0
        return None

    def _output_time(self, c: Connection) -> int | None:
        pump = None if c.pump_at is None else max(c.pump_at, self._link_free)
        if c.ack_due is None:
            return pump
        return c.ack_due if pump is None else min(pump, c.ack_due)

    def _output(self, c: Connection, t: int) -> int:
        """A send event: the next segment if there is one (it carries the ACK), else an ACK if owed."""
        ack_owed = c.ack_due is not None and c.ack_due <= t
        if not self._send_next(c, t) and ack_owed:
            self._send(c, c.snd_nxt, ACK, b"", t)
            self.counters.acks_sent += 1
        if self._next_segment(c) is None:
            c.pump_at = None
        return 0

    def _send_next(self, c: Connection, t: int) -> bool:
        nxt = self._next_segment(c)
        if nxt is None:
            return False
        offset, flags, n = nxt
        payload = _CHARGEN[(offset - 1) % 95:(offset - 1) % 95 + n]
        if offset < c.snd_max:
            self.counters.retransmissions += 1
        else:
            c.bytes_sent += n
            self.counters.bytes_sent += n
        c.snd_nxt = offset + n + bool(flags & (SYN | FIN))
        c.snd_max = max(c.snd_max, c.snd_nxt)
        c.rto_at = t + c.rto if c.rto_at is None else c.rto_at
        c.force = False
        self._send(c, offset, flags, payload, t)
        return True

    def _send(self, c: Connection, offset: int, flags: int, payload: bytes, t: int) -> None:
        options = struct.pack("!BBH", 2, 4, MSS) if flags & SYN else b""
        self._ip_out(c.remote_ip, PROTO_TCP, tcp(PEER_IP, c.remote_ip, c.local_port, c.remote_port, c.iss + offset,
                                                 c.irs + c.rcv_nxt, flags, RCV_WINDOW, payload, options), t)
        c.ack_due, c.unacked = None, 0
        self.counters.segments_sent += 1

    def _timeout(self, c: Connection, t: int) -> int:
        """The retransmission timer (RFC 6298 5.4-5.7), or the probe of a closed window."""
        c.rto_at = None
        if c.snd_max == c.snd_una:                     # nothing outstanding: probe the window
            c.force, c.pump_at = True, t
            return 0
        c.retries += 1
        if c.retries > MAX_RETRIES:                    # the guest is gone: give up
            self._send(c, c.snd_nxt, RST, b"", t)
            self.counters.resets_sent += 1
            c.closed, c.reset, c.ack_due, c.pump_at = True, True, None, None
            return 0
        self.counters.timeouts += 1
        c.rto = min(2 * c.rto, self._cycles(RTO_MAX_S))
        if c.snd_una > 0:                              # RFC 5681 (4), (5)
            c.ssthresh = max((c.snd_max - c.snd_una) // 2, 2 * c.mss)
            c.cwnd = c.mss
        c.recover, c.dupacks = None, 0
        c.snd_nxt, c.force, c.pump_at = c.snd_una, True, t   # go back to the first unacknowledged
        return 0
