"""The TCP peer (devices/tcppeer.py) driven directly: frames built here, with this file's own checksum
and header layout (not the peer's), go in through on_transmit on a fake clock; what the peer delivers
is parsed back here. Expected values come from the protocol (RFC 826, 792, 9293, 1122) and the peer's
documented constants."""
from __future__ import annotations

import struct

import pytest

from vmexit.devices.tcppeer import ACK, FIN, ISN, PEER_IP, PEER_MAC, PSH, RST, SYN, TcpPeer

FREQ = 1_000_000_000                    # 1 cycle = 1 ns
DELAY = 20_000                          # the peer's 20 us reply delay, in cycles
GUEST_MAC = bytes.fromhex("525400123456")
GUEST_IP = bytes((10, 0, 2, 15))
GPORT = 40000
GISN = 0xFFFFFF00                       # the guest's ISN: its sequence numbers wrap in the tests


# this file's own frame builder -------------------------------------------------------------------------
def csum(data: bytes) -> int:
    data = data + b"\0" * (len(data) % 2)
    s = 0
    for i in range(0, len(data), 2):
        s += data[i] << 8 | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(kind: int, payload: bytes, dst: bytes = PEER_MAC) -> bytes:
    frame = dst + GUEST_MAC + kind.to_bytes(2, "big") + payload
    return frame + bytes(max(0, 60 - len(frame)))        # 8139too pads short frames to 60 bytes


def ip(proto: int, payload: bytes, dst: bytes = PEER_IP) -> bytes:
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 7, 0x4000, 64, proto, 0, GUEST_IP, dst))
    h[10:12] = csum(bytes(h)).to_bytes(2, "big")
    return eth(0x0800, bytes(h) + payload)


def seg(seq: int, ack: int, flags: int, payload: bytes = b"", window: int = 64240, dport: int = 5001,
        options: bytes = b"", sport: int = GPORT) -> bytes:
    h = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                              (20 + len(options)) // 4 << 4, flags, window, 0, 0) + options)
    pseudo = GUEST_IP + PEER_IP + struct.pack("!BBH", 0, 6, len(h) + len(payload))
    h[16:18] = csum(pseudo + bytes(h) + payload).to_bytes(2, "big")
    return ip(6, bytes(h) + payload)


#: Linux's SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7
LINUX_SYN_OPTIONS = bytes.fromhex("020405b4" "0402" "080a0000000100000000" "01" "030307")


def parse(frame: bytes) -> dict:
    """A TCP/IPv4 frame from the peer, its checksums checked."""
    assert frame[:6] == GUEST_MAC and frame[6:12] == PEER_MAC and frame[12:14] == b"\x08\x00"
    iph = frame[14:34]
    assert csum(iph) == 0 and iph[12:16] == PEER_IP and iph[16:20] == GUEST_IP
    total = int.from_bytes(iph[2:4], "big")
    body = frame[34:14 + total]
    pseudo = PEER_IP + GUEST_IP + struct.pack("!BBH", 0, iph[9], len(body))
    assert csum(pseudo + body) == 0 if iph[9] == 6 else csum(body) == 0
    if iph[9] != 6:
        return {"proto": iph[9], "body": body}
    sport, dport, sq, ak, off, flags, win = struct.unpack_from("!HHIIBBH", body)
    return {"sport": sport, "dport": dport, "seq": sq, "ack": ak, "flags": flags, "window": win,
            "options": body[20:(off >> 4) * 4], "payload": body[(off >> 4) * 4:], "df": iph[6] & 0x40}


class Wire:
    """The clock and the NIC side: frames the peer delivers, with their times."""

    def __init__(self, **kwargs):
        self.t = 0
        self.got: list[tuple[int, bytes]] = []
        self.refuse: set[int] = set()               # indices of deliveries the NIC refuses (ring full)
        self.attempts = 0
        self.peer = TcpPeer(lambda: self.t, FREQ, self.deliver, 11, **kwargs)

    def deliver(self, frame: bytes) -> bool:
        self.attempts += 1
        if self.attempts - 1 in self.refuse:
            return False
        self.got.append((self.t, frame))
        return True

    def run(self, until: int) -> None:
        """Fire the peer's events up to `until`, each at its own time, as the vCPU does."""
        while (due := self.peer.next_event()) is not None and due <= until:
            self.t = max(self.t, due)
            self.peer.advance(self.t)
        self.t = max(self.t, until)

    def send(self, frame: bytes, gap: int = 1000) -> None:
        """The guest transmits at the current time; the clock then moves on `gap` cycles."""
        self.peer.on_transmit(frame)
        self.run(self.t + gap)

    def take(self) -> list[tuple[int, bytes]]:
        got, self.got = self.got, []
        return got

    def tcp(self) -> list[dict]:
        return [parse(f) for _, f in self.take()]


def arp_request(tpa: bytes = PEER_IP, dst: bytes = b"\xff" * 6) -> bytes:
    return eth(0x0806, struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, GUEST_MAC, GUEST_IP, bytes(6), tpa), dst)


def connected(port: int = 5001, mss: int = 1460, window: int = 64240, **kwargs) -> Wire:
    """A wire whose guest has resolved the peer and finished the handshake on `port`."""
    w = Wire(**kwargs)
    w.send(arp_request(), gap=DELAY + 1000)
    w.take()
    w.send(seg(GISN, 0, SYN, dport=port, window=window, options=struct.pack("!BBH", 2, 4, mss)), gap=DELAY + 1000)
    synack = w.tcp()[0]
    w.send(seg(GISN + 1, synack["seq"] + 1, ACK, dport=port, window=window))
    return w


# link layer ---------------------------------------------------------------------------------------------
def test_arp_request_gets_the_exact_reply_after_the_reply_delay():
    w = Wire()
    w.send(arp_request(), gap=DELAY + 1000)
    [(at, frame)] = w.take()
    expected = (GUEST_MAC + bytes.fromhex("52550a000202") + b"\x08\x06" + bytes.fromhex("0001 0800 06 04 0002")
                + bytes.fromhex("52550a000202") + bytes([10, 0, 2, 2]) + GUEST_MAC + bytes([10, 0, 2, 15]))
    assert frame == expected + bytes(60 - len(expected))
    assert at == DELAY
    assert w.peer.counters.arp_replies == 1


def test_arp_for_another_address_and_foreign_frames_are_ignored():
    w = Wire()
    w.send(arp_request(tpa=bytes((10, 0, 2, 3))))
    w.send(eth(0x86DD, bytes(40), dst=b"\x33\x33\x00\x00\x00\x02"))       # IPv6 router solicitation
    w.send(ip(6, bytes(20), dst=bytes((10, 0, 2, 3))))                    # IPv4 for someone else
    w.run(w.t + DELAY)
    assert w.take() == []
    assert w.peer.counters.frames_ignored == 3 and w.peer.counters.frames_received == 3


def test_icmp_echo_gets_its_reply():
    w = Wire()
    w.send(arp_request(), gap=DELAY + 1000)
    w.take()
    echo = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"ping-data")
    echo[2:4] = csum(bytes(echo)).to_bytes(2, "big")
    w.send(ip(1, bytes(echo)), gap=DELAY + 1000)
    [reply] = w.tcp()
    assert reply["proto"] == 1 and reply["body"][0] == 0 and reply["body"][4:] == bytes(echo[4:])
    assert w.peer.counters.icmp_echo_replies == 1


def test_udp_gets_port_unreachable_quoting_the_datagram():
    w = Wire()
    w.send(arp_request(), gap=DELAY + 1000)
    w.take()
    frame = ip(17, struct.pack("!HHHH", 1234, 53, 12, 0) + b"abcd")          # no checksum (0): allowed
    w.send(frame, gap=DELAY + 1000)
    [reply] = w.tcp()
    assert reply["body"][:2] == b"\x03\x03" and reply["body"][8:] == frame[14:14 + 28]


def test_the_peer_arps_first_when_it_does_not_know_the_guest():
    w = Wire()
    w.send(seg(GISN, 0, SYN, options=struct.pack("!BBH", 2, 4, 1460)), gap=DELAY + 1000)
    [(_, request)] = w.take()
    assert request[:6] == b"\xff" * 6 and request[12:14] == b"\x08\x06"
    assert request[14:42] == (bytes.fromhex("0001 0800 06 04 0001") + PEER_MAC + PEER_IP + bytes(6) + GUEST_IP)
    reply = eth(0x0806, struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, GUEST_MAC, GUEST_IP, PEER_MAC, PEER_IP))
    w.send(reply, gap=DELAY + 1000)
    [synack] = w.tcp()
    assert synack["flags"] == SYN | ACK and synack["ack"] == (GISN + 1) & 0xFFFFFFFF
    assert w.peer.counters.arp_requests == 1


# TCP: handshake, sink, close --------------------------------------------------------------------------
def test_syn_gets_a_syn_ack_with_the_isn_and_only_the_mss_option():
    w = Wire()
    w.send(arp_request(), gap=DELAY + 1000)
    w.take()
    sent = w.t
    w.send(seg(GISN, 0, SYN, options=LINUX_SYN_OPTIONS), gap=DELAY + 1000)
    [(at, frame)] = w.take()
    s = parse(frame)
    assert (s["sport"], s["dport"]) == (5001, GPORT)
    assert s["seq"] == ISN and s["ack"] == (GISN + 1) & 0xFFFFFFFF and s["flags"] == SYN | ACK
    assert s["options"] == bytes.fromhex("020405b4") and s["window"] == 65535 and s["payload"] == b""
    assert s["df"] and at == sent + DELAY                   # sent as the SYN reaches the peer
    assert w.peer.connections[(GUEST_IP, GPORT, 5001)].state == "SYN-RECEIVED"


GUEST_GAP = 125_000    # a 1514-byte frame and its overhead take 123 us at the guest's 100 Mb/s


def test_a_stream_is_acked_every_second_segment_and_counted():
    n, size = 10, 1448
    w = connected()
    sent = []
    for i in range(n):
        sent.append(w.t)
        w.send(seg(GISN + 1 + i * size, ISN + 1, ACK | PSH, bytes([i]) * size), gap=GUEST_GAP)
    w.run(w.t + DELAY)
    got = w.take()
    acks = [parse(f) for _, f in got]
    assert [a["ack"] for a in acks] == [(GISN + 1 + 2 * k * size) & 0xFFFFFFFF for k in range(1, n // 2 + 1)]
    assert [at for at, _ in got] == [sent[i] + DELAY for i in range(1, n, 2)]   # as the 2nd one arrives
    assert all(a["flags"] == ACK and a["payload"] == b"" and a["seq"] == ISN + 1 for a in acks)
    c = w.peer.counters
    assert c.bytes_received == n * size and c.acks_sent == n // 2 and c.segments_received == 2 + n


def test_an_odd_segment_is_acked_by_the_delayed_ack_timer():
    size = 1000
    w = connected()
    sent_at = w.t
    w.send(seg(GISN + 1, ISN + 1, ACK | PSH, b"x" * size), gap=0)
    w.run(sent_at + DELAY + 40_000_000 - 1)
    assert w.take() == []                                     # nothing before 40 ms
    w.run(sent_at + DELAY + 40_000_000)
    [(at, frame)] = w.take()
    assert at == sent_at + DELAY + 40_000_000 and parse(frame)["ack"] == (GISN + 1 + size) & 0xFFFFFFFF


def test_a_segment_past_a_hole_is_dropped_and_answered_with_a_duplicate_ack():
    w = connected()
    w.send(seg(GISN + 1 + 1000, ISN + 1, ACK, b"y" * 1000), gap=DELAY + 1000)
    [dup] = w.tcp()
    assert dup["ack"] == (GISN + 1) & 0xFFFFFFFF
    assert w.peer.counters.out_of_order == 1 and w.peer.counters.bytes_received == 0


def test_fin_handshake_closes_the_sink():
    w = connected()
    w.send(seg(GISN + 1, ISN + 1, ACK | PSH, b"z" * 100))
    w.send(seg(GISN + 101, ISN + 1, FIN | ACK), gap=DELAY + 1000)
    [finack] = w.tcp()                                       # our ACK of the data rides on the FIN
    assert finack["flags"] == FIN | ACK and finack["seq"] == ISN + 1
    assert finack["ack"] == (GISN + 102) & 0xFFFFFFFF
    conn = w.peer.connections[(GUEST_IP, GPORT, 5001)]
    assert conn.state == "LAST-ACK"
    w.send(seg(GISN + 102, ISN + 2, ACK), gap=DELAY + 1000)
    assert conn.state == "CLOSED" and w.take() == [] and conn.bytes_received == 100


def test_a_lost_syn_ack_is_sent_again_at_the_one_second_timeout():
    w = Wire()
    w.send(arp_request(), gap=DELAY + 1000)
    w.take()
    start = w.t
    w.send(seg(GISN, 0, SYN, options=LINUX_SYN_OPTIONS), gap=0)
    w.run(start + DELAY + 1_000_000_000)
    times = [at for at, _ in w.take()]
    assert times == [start + DELAY, start + DELAY + 1_000_000_000]
    assert w.peer.counters.retransmissions == 1 and w.peer.counters.timeouts == 1


@pytest.mark.parametrize("flags,seq,ack,expect_seq,expect_ack,expect_flags", [
    (SYN, GISN, 0, 0, GISN + 1, RST | ACK),              # SYN to a closed port: RST, ACK of the SYN
    (ACK, GISN, 0x5555, 0x5555, 0, RST),                  # an ACK nobody expects: RST at its ack
])
def test_closed_ports_answer_with_reset(flags, seq, ack, expect_seq, expect_ack, expect_flags):
    w = Wire()
    w.send(arp_request(), gap=DELAY + 1000)
    w.take()
    w.send(seg(seq, ack, flags, dport=7 if flags == SYN else 5001), gap=DELAY + 1000)
    [rst] = w.tcp()
    assert (rst["seq"], rst["ack"], rst["flags"]) == (expect_seq, expect_ack & 0xFFFFFFFF, expect_flags)
    assert w.peer.counters.resets_sent == 1 and not w.peer.connections


def test_bad_checksums_are_dropped_and_counted():
    w = Wire()
    w.send(arp_request(), gap=DELAY + 1000)
    w.take()
    good = seg(GISN, 0, SYN)
    bad_tcp = bytearray(good)
    bad_tcp[14 + 20 + 16] ^= 0x01                           # the TCP checksum
    bad_ip = bytearray(good)
    bad_ip[14 + 10] ^= 0x01                                 # the IP header checksum
    bad_payload = bytearray(seg(GISN, 0, SYN, payload=b"data"))
    bad_payload[14 + 20 + 20 + 3] ^= 0xFF                   # the payload's last byte (not the padding)
    for frame in (bad_tcp, bad_ip, bad_payload):
        w.send(bytes(frame), gap=DELAY + 1000)
    assert w.take() == [] and w.peer.counters.bad_checksums == 3 and not w.peer.connections


# TCP: the source ----------------------------------------------------------------------------------------
def test_source_respects_the_guests_window_and_leaves_at_line_rate():
    mss, window = 1000, 4000
    w = connected(port=5002, mss=mss, window=window, source_bytes=10_000)
    w.run(w.t + 10_000_000)
    got = w.take()
    segs = [parse(f) for _, f in got]
    assert [s["seq"] for s in segs] == [ISN + 1 + k * mss for k in range(window // mss)]   # a window, no more
    assert all(len(s["payload"]) == mss for s in segs)
    wire = -(-(14 + 20 + 20 + mss + 24) * 8 * FREQ // 100_000_000)     # 1078 bytes at 100 Mb/s
    assert [b[0] - a[0] for a, b in zip(got, got[1:])] == [wire] * (len(got) - 1)
    assert segs[0]["payload"] == bytes(range(32, 127)) * 10 + bytes(range(32, 82))       # chargen's characters
    w.send(seg(GISN + 1, ISN + 1 + 2 * mss, ACK, window=window, dport=5002), gap=DELAY + 10_000_000)
    more = w.tcp()
    assert [s["seq"] for s in more] == [ISN + 1 + k * mss for k in (4, 5)]


def test_source_sends_everything_then_fin_and_closes():
    total, mss = 10_000, 1460
    w = connected(port=5002, mss=mss, source_bytes=total)
    received, fin = 0, None
    for _ in range(20):
        w.run(w.t + 10_000_000)
        for s in w.tcp():
            received += len(s["payload"])
            fin = s if s["flags"] & FIN else fin
        w.send(seg(GISN + 1, ISN + 1 + received + (fin is not None), ACK, dport=5002), gap=DELAY)
    assert received == total and fin["seq"] == ISN + 1 + total
    conn = w.peer.connections[(GUEST_IP, GPORT, 5002)]
    assert conn.state == "FIN-WAIT-2" and conn.bytes_sent == total
    w.send(seg(GISN + 1, ISN + 2 + total, FIN | ACK, dport=5002), gap=DELAY + 1000)
    [last] = w.tcp()
    assert last["flags"] == ACK and last["ack"] == (GISN + 2) & 0xFFFFFFFF and conn.state == "CLOSED"
    assert w.peer.counters.retransmissions == 0


def test_source_retransmits_at_the_timeout():
    mss = 1000
    w = connected(port=5002, mss=mss, window=2000, source_bytes=5000)
    start = w.t
    w.run(start + 1_000_000)
    assert len(w.take()) == 2
    w.run(start + 300_000_000)                              # no ACK: RTO 200 ms after the first segment
    again = w.tcp()
    assert [s["seq"] for s in again] == [ISN + 1]
    assert w.peer.counters.timeouts == 1 and w.peer.counters.retransmissions == 1


def test_three_duplicate_acks_retransmit_the_lost_segment_at_once():
    mss = 1000
    w = connected(port=5002, mss=mss, window=8000, source_bytes=20_000)
    w.refuse = {w.attempts + 1}                             # the NIC drops the second data frame
    w.run(w.t + 2_000_000)
    assert len(w.take()) == 7
    w.send(seg(GISN + 1, ISN + 1 + mss, ACK, window=8000, dport=5002), gap=DELAY + 100_000)
    assert [s["seq"] for s in w.tcp()] == [ISN + 1 + 8 * mss]   # the first ACK opens the window by one
    for _ in range(3):                                      # then three duplicates (the guest misses 1001)
        sent = w.t
        w.send(seg(GISN + 1, ISN + 1 + mss, ACK, window=8000, dport=5002), gap=DELAY + 100_000)
    [(at, frame)] = w.take()
    assert parse(frame)["seq"] == ISN + 1 + mss and at == sent + DELAY
    c = w.peer.counters
    assert (c.fast_retransmits, c.retransmissions, c.frames_dropped, c.timeouts) == (1, 1, 1, 0)


def test_same_exchange_same_frames_at_the_same_times():
    def exchange():
        w = connected(port=5002, mss=1200, window=6000, source_bytes=20_000)
        for k in range(5):
            w.run(w.t + 3_000_000)
            w.send(seg(GISN + 1, ISN + 1 + 1200 * 2 * (k + 1), ACK, window=6000, dport=5002))
        w.run(w.t + 500_000_000)
        return w.take(), w.peer.results()
    first, second = exchange(), exchange()
    assert first == second and len(first[0]) > 10


def test_a_partial_ack_after_fast_retransmit_sends_the_next_hole_at_once():
    mss = 1000
    w = connected(port=5002, mss=mss, window=8000, source_bytes=20_000)
    w.refuse = {w.attempts + 1, w.attempts + 3}             # the second and the fourth data frames are lost
    w.run(w.t + 2_000_000)
    assert len(w.take()) == 6
    w.send(seg(GISN + 1, ISN + 1 + mss, ACK, window=8000, dport=5002), gap=DELAY + 100_000)
    w.take()
    for _ in range(3):
        w.send(seg(GISN + 1, ISN + 1 + mss, ACK, window=8000, dport=5002), gap=DELAY + 100_000)
    assert [parse(f)["seq"] for _, f in w.take()] == [ISN + 1 + mss]
    sent = w.t
    w.send(seg(GISN + 1, ISN + 1 + 3 * mss, ACK, window=8000, dport=5002), gap=DELAY + 100_000)
    [(at, frame)] = w.take()                                # the hole at 3001, not a new segment
    assert parse(frame)["seq"] == ISN + 1 + 3 * mss and at == sent + DELAY
    assert w.peer.counters.retransmissions == 2 and w.peer.counters.timeouts == 0


def test_a_closed_window_is_probed_at_the_timeout():
    mss = 1000
    w = connected(port=5002, mss=mss, window=2000, source_bytes=20_000)
    w.run(w.t + 1_000_000)
    assert len(w.take()) == 2
    sent = w.t
    w.send(seg(GISN + 1, ISN + 1 + 2 * mss, ACK, window=0, dport=5002), gap=0)   # all taken, window shut
    w.run(sent + DELAY + 200_000_000)
    [(at, frame)] = w.take()
    probe = parse(frame)
    assert at == sent + DELAY + 200_000_000 and probe["seq"] == ISN + 1 + 2 * mss and len(probe["payload"]) == 1


# the run option -------------------------------------------------------------------------------------------
def test_net_peer_option_is_checked(capsys):
    from vmexit.cli import EXIT_USAGE, main
    from vmexit.errors import VmexitError
    from vmexit.options import RunOptionError
    from vmexit.session import RunOptions
    with pytest.raises(RunOptionError) as bad:
        RunOptions(net_peer="udp")
    assert bad.value.cli == "--net-peer 'udp': choose from stream, tcp"
    with pytest.raises(VmexitError, match="net_peer_sends or net_peer='tcp', not both"):
        RunOptions(net_peer="tcp", net_peer_sends=True)
    assert main(["run", "timer", "--no-progress", "--net-peer", "tcp", "--net-peer-sends"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "give --net-peer-sends or --net-peer tcp, not both" in err and len(err.strip().splitlines()) == 1


def test_a_run_with_the_tcp_peer_reports_its_counters():
    """The bundled netperf guest's frames are no IP (zero addresses and headers): the TCP peer reads each
    one, answers none, and the guest, acknowledged by nobody, stops with its four descriptors in flight."""
    from vmexit import guests, session
    from vmexit.costs import load_profile
    trace = session.run(guests.resolve("netperf", {}), load_profile(None), session.RunOptions(net_peer="tcp"))
    peer, nic = trace.meta["net_peer"], trace.meta["nic"]
    assert peer["frames_received"] == peer["frames_ignored"] == nic["tx_frames"] == 4
    assert peer["frames_sent"] == nic["rx_frames"] == 0
    assert (peer["ip"], peer["mac"]) == ("10.0.2.2", "52:55:0a:00:02:02")
    assert trace.meta["options"]["net_peer"] == "tcp"


# against a real Linux TCP --------------------------------------------------------------------------------
def linux_exchange(sink_bytes: int, source_bytes: int, drop_every: int) -> dict:
    """In a fresh network namespace (the caller's `unshare -n`): a tap device as the guest's NIC at
    10.0.2.15, the host's own Linux TCP as the guest's stack, the peer on the host clock bridged to the
    tap, every `drop_every`-th frame of the peer's lost. Sends sink_bytes to port 5001 and reads port
    5002 to its end. The peer's timing here is the host's, so only what was transferred is checked."""
    import fcntl, os, select, socket, subprocess, threading, time
    tap = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tap, 0x400454CA, struct.pack("16sH", b"tap0", 0x0002 | 0x1000))   # TUNSETIFF: TAP, no PI
    for cmd in ("link set lo up", "link set tap0 address 52:54:00:12:34:56", "addr add 10.0.2.15/24 dev tap0",
                "link set tap0 up"):
        subprocess.run(["ip", *cmd.split()], check=True)
    start, sent = time.monotonic_ns(), [0]

    def deliver(frame: bytes) -> bool:
        sent[0] += 1
        return sent[0] % drop_every != 0 and os.write(tap, frame) > 0

    peer = TcpPeer(lambda: time.monotonic_ns() - start, 1_000_000_000, deliver, 11, source_bytes=source_bytes)
    done = threading.Event()

    def bridge() -> None:
        while not done.is_set():
            due = peer.next_event()
            wait = 0.01 if due is None else min(0.01, max(0.0, (due - time.monotonic_ns() + start) / 1e9))
            if select.select([tap], [], [], wait)[0]:
                peer.on_transmit(os.read(tap, 65536))
            peer.advance(time.monotonic_ns() - start)

    threading.Thread(target=bridge, daemon=True).start()
    with socket.create_connection(("10.0.2.2", 5001)) as s:
        s.sendall(b"\xa5" * sink_bytes)
        s.shutdown(socket.SHUT_WR)
        sink_eof = s.recv(1) == b""                    # the peer's FIN
    got = bytearray()
    with socket.create_connection(("10.0.2.2", 5002)) as r:
        while chunk := r.recv(65536):
            got += chunk
    done.set()
    chargen = (bytes(range(32, 127)) * (len(got) // 95 + 1))[:len(got)]
    return {"sink_eof": sink_eof, "got": len(got), "pattern": got == chargen,
            **{k: v for k, v in peer.results().items() if k != "tcp"}}


def test_linux_tcp_completes_both_transfers_over_a_lossy_wire():
    import json, os, shutil, subprocess, sys
    from pathlib import Path
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, /dev/net/tun, unshare and ip: a tap device in a network namespace")
    code = ("import json; from tests.devices.test_tcppeer import linux_exchange; "
            "print(json.dumps(linux_exchange(1 << 20, 300_000, 13)))")
    out = subprocess.run(["unshare", "-n", sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    if out.returncode and "Operation not permitted" in out.stderr:
        pytest.skip(f"no network namespace or tap here: {out.stderr.strip().splitlines()[-1]}")
    r = json.loads(out.stdout)
    assert r["sink_eof"] and r["bytes_received"] == 1 << 20
    assert r["got"] == r["bytes_sent"] == 300_000 and r["pattern"]
    assert r["frames_dropped"] > 0 and r["retransmissions"] > 0 and r["bad_checksums"] == 0
