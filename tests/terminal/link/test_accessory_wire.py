"""The POS app's accessory wire (terminal.link.accessory_wire) around real file descriptors.

On the POS the two streams come from UsbManager.openAccessory's descriptor (pyjnius, Android only);
here the same FdAccessory wraps one end of a socketpair (one bidirectional descriptor, as the
accessory's is) or two pipes, and the test plays the bridge at the other end. The link endpoint over
this wire, against the real bridge, is tests/bridge/test_aoa.py."""

from __future__ import annotations

import os
import socket
import time

import pytest

from terminal.link.accessory_wire import READ_SIZE, AccessoryWire
from terminal.link.android_accessory import FdAccessory
from terminal.link.wire import WireReset
from terminal.link.wires import WireError, open_wire


class Plug:
    """An opener the test controls: None until `attach()`, then a fresh socketpair accessory each time."""

    def __init__(self) -> None:
        self.attached = False
        self.calls = 0
        self.host: socket.socket | None = None
        self.accessory: FdAccessory | None = None

    def attach(self) -> None:
        self.attached = True

    def __call__(self) -> FdAccessory | None:
        self.calls += 1
        if not self.attached:
            return None
        device_end, self.host = socket.socketpair()
        self.accessory = FdAccessory(device_end.detach())
        self.attached = False  # one accessory per attach, as Android gives one per attachment
        return self.accessory


def open_session(wire: AccessoryWire) -> None:
    with pytest.raises(WireReset, match="opened"):
        wire.read(100, 0.01)


def read_until(wire: AccessoryWire, size: int, timeout: float = 5.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < size and time.monotonic() < deadline:
        got += wire.read(size - len(got), 0.1)
    return got


def test_nothing_attached_reads_nothing_and_asks_again_only_after_the_interval() -> None:
    now = [0.0]
    plug = Plug()
    wire = AccessoryWire(plug, reopen_interval_s=0.5, clock=lambda: now[0])
    assert wire.read(100, 0.01) == b"" and plug.calls == 1
    assert wire.read(100, 0.01) == b"" and plug.calls == 1  # not hammering UsbManager
    now[0] = 0.6
    plug.attach()
    open_session(wire)
    assert plug.calls == 2 and wire.is_open
    wire.close()


def test_bytes_both_ways_and_a_large_chunk_in_pieces() -> None:
    plug = Plug()
    plug.attach()
    wire = AccessoryWire(plug)
    open_session(wire)
    assert plug.host is not None
    big = os.urandom(3 * READ_SIZE + 17)
    plug.host.sendall(big)
    assert read_until(wire, len(big)) == big
    wire.write(b"frame from the POS")
    assert plug.host.recv(100) == b"frame from the POS"
    assert wire.read(100, 0.05) == b""  # nothing more: the timeout is honoured despite blocking reads
    wire.close()


def test_the_host_going_away_ends_the_session_and_a_new_accessory_starts_another() -> None:
    plug = Plug()
    plug.attach()
    wire = AccessoryWire(plug, reopen_interval_s=0.0)
    open_session(wire)
    first_host = plug.host
    assert first_host is not None
    first_host.sendall(b"half a fra")
    first_host.close()  # the cable is pulled
    assert read_until(wire, 10) == b"half a fra"
    with pytest.raises(WireReset, match="went away: end of stream"):
        for _ in range(100):
            wire.read(100, 0.05)
    assert not wire.is_open
    wire.write(b"into the void")  # no accessory: dropped, no error
    plug.attach()  # the bridge switched the POS again
    open_session(wire)
    plug.host.sendall(b"again")  # type: ignore[union-attr]  # set by the opener once it has run, which the test waited for
    assert read_until(wire, 5) == b"again"
    assert wire.sessions == 2
    wire.close()


def test_two_pipes_work_as_the_two_streams_and_a_failed_write_drops_the_session() -> None:
    to_device_r, to_device_w = os.pipe()
    to_host_r, to_host_w = os.pipe()
    accessory = FdAccessory(to_device_r, to_host_w)
    given = [accessory]
    wire = AccessoryWire(lambda: given.pop() if given else None, reopen_interval_s=0.0)
    open_session(wire)
    os.write(to_device_w, b"abc")
    assert read_until(wire, 3) == b"abc"
    wire.write(b"xyz")
    assert os.read(to_host_r, 10) == b"xyz"
    os.close(to_host_r)  # nobody reads any more: the write fails (EPIPE)
    wire.write(b"lost")
    assert not wire.is_open and "write failed" in (wire.last_error or "")
    os.close(to_device_w)


def test_unplug_stops_writing_and_replug_opens_a_new_session() -> None:
    plug = Plug()
    plug.attach()
    wire = AccessoryWire(plug, reopen_interval_s=0.0)
    open_session(wire)
    accessory, host = plug.accessory, plug.host
    assert accessory is not None and host is not None
    wire.unplug()
    assert accessory.output.closed and not wire.is_open
    host.sendall(b"late bytes of the old session")  # the reader's read returns: it discards them and closes
    deadline = time.monotonic() + 5
    while not accessory.input.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert accessory.input.closed
    plug.attach()
    assert wire.read(10, 0.01) == b""  # unplugged: not even trying
    wire.replug()
    open_session(wire)
    wire.close()


def test_a_new_session_never_loses_bytes_to_the_reader_of_the_old_one() -> None:
    """Descriptor numbers are reused: the old session's reader must not read the new accessory."""
    plug = Plug()
    wire = AccessoryWire(plug, reopen_interval_s=0.0)
    for round_ in range(100):
        plug.attach()
        open_session(wire)
        payload = os.urandom(READ_SIZE + 100)
        plug.host.sendall(payload)  # type: ignore[union-attr]  # set by the opener once it has run, which the test waited for
        assert read_until(wire, len(payload)) == payload, f"round {round_}"
        wire.unplug()
        plug.host.close()  # type: ignore[union-attr]  # set by the opener once it has run, which the test waited for
        wire.replug()
    wire.close()


def test_on_the_pc_aoa_is_refused_with_what_to_use() -> None:
    with pytest.raises(WireError, match="needs pyjnius"):
        open_wire("aoa")
    with pytest.raises(WireError, match="names the PC's end of the cable"):
        open_wire("aoa://1209:7D02")
