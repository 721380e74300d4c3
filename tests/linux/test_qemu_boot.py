"""The built Linux guest runs each workload of tools/linux/init to its end marker in QEMU (TCG), with
results checked by construction: the compute loop's sum, the bytes dd wrote on the disk, the bytes a
host listener received. Skipped without qemu-system-i386 (Debian: qemu-system-x86) or without a build."""
from __future__ import annotations

import socket
import threading

import pytest

from .qemu import QEMU, boot

pytestmark = pytest.mark.skipif(QEMU is None, reason="qemu-system-i386 not installed")


def test_shell_prompt_answers_a_command(linux_kernel):
    console = boot(linux_kernel, "vmexit.workload=shell",
                   replies={"/ # ": "echo answer=$((6 * 7)); reboot -f\n"})
    assert "vmexit: workload shell start" in console
    assert "answer=42" in console


def test_compute_prints_the_loops_sum(linux_kernel):
    console = boot(linux_kernel, "vmexit.workload=compute vmexit.count=1000")
    assert "vmexit: compute sum 499500\n" in console  # 0 + 1 + ... + 999
    assert "vmexit: workload compute done" in console


def test_disk_writes_count_blocks_of_zeros_through_ata_piix(linux_kernel, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\xff" * (2 << 20))
    console = boot(linux_kernel, "vmexit.workload=disk vmexit.count=8",
                   "-drive", f"file={disk},format=raw,if=ide")
    assert "ata_piix" in console
    assert "vmexit: disk write done" in console and "vmexit: disk read done" in console
    assert "vmexit: workload disk done" in console
    data = disk.read_bytes()
    assert data[: 8 * 65536] == bytes(8 * 65536)  # 8 blocks of 64 KiB zeros ...
    assert data[8 * 65536:] == b"\xff" * ((2 << 20) - 8 * 65536)  # ... and not one byte more


def test_net_streams_count_kib_to_a_host_listener(linux_kernel):
    # QEMU's user network maps the guest's 10.0.2.2 to the host's loopback. QEMU's rtl8139 is revision
    # 0x20, an 8139C+, so 8139cp drives it here (vmexit's, revision 0, gets 8139too).
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = []

    def sink():
        conn, _ = server.accept()
        with conn:
            total = 0
            while chunk := conn.recv(65536):
                total += len(chunk)
            received.append(total)

    thread = threading.Thread(target=sink, daemon=True)
    thread.start()
    try:
        console = boot(linux_kernel, f"vmexit.workload=net vmexit.count=64 vmexit.port={port}",
                       "-netdev", "user,id=n", "-device", "rtl8139,netdev=n")
    finally:
        server.close()
    thread.join(timeout=10)
    assert "8139cp 0000:00:03.0 eth0: RTL-8139C+" in console
    assert "vmexit: workload net done" in console
    assert received == [64 * 1024]
