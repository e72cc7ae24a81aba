"""Transports: real ptys through pyserial, real TCP, pyusb with the simulator's backend, discovery."""

from __future__ import annotations

import os
import socket
import threading
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.transport import (
    AutoSerialTransport, SerialTransport, TcpTransport, TransportClosed, TransportError, UsbTransport, make_transport,
    open_transport,
)
from bridge.transport import discovery
from firmware_sim.wires import PtyWire
from firmware_sim.usb_backend import VirtualUsbBackend, VirtualUsbDevice


def test_serial_over_a_pty_moves_bytes_both_ways_and_reports_the_unplug() -> None:
    wire = PtyWire()
    transport = open_transport(wire.bridge_url)
    try:
        assert isinstance(transport, SerialTransport)
        assert transport.read(100, 0.05) == b""  # nothing yet: returns at the timeout
        wire.write(b"\xa5\x5a" + bytes(range(200)))
        data = b""
        while len(data) < 202:
            data += transport.read(1000, 1.0)  # takes what arrived, not one byte at a time
        assert data == b"\xa5\x5a" + bytes(range(200))
        transport.write(b"hello device")
        assert wire.read(100, 1.0) == b"hello device"
        wire.unplug()
        with pytest.raises(TransportClosed):
            for _ in range(100):
                transport.read(100, 0.05)
    finally:
        transport.close()
        wire.close()


def test_serial_open_failure_says_what_to_check() -> None:
    with pytest.raises(TransportError) as error:
        open_transport("serial:/dev/no-such-pos")
    assert "is the POS plugged in" in str(error.value) and "his-bridge ports" in str(error.value)


def test_tcp_reads_writes_and_sees_the_peer_close() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    transport = open_transport(f"socket://127.0.0.1:{port}")
    peer, _ = server.accept()
    try:
        assert isinstance(transport, TcpTransport)
        peer.sendall(b"abc")
        assert transport.read(10, 1.0) == b"abc"
        transport.write(b"xyz")
        assert peer.recv(10) == b"xyz"
        assert transport.read(10, 0.01) == b""
        peer.close()
        with pytest.raises(TransportClosed):
            transport.read(10, 1.0)
    finally:
        transport.close()
        server.close()
    with pytest.raises(TransportError) as error:
        open_transport(f"socket://127.0.0.1:{port}")
    assert "cannot connect" in str(error.value)


def test_usb_finds_by_vid_pid_and_serial_and_reports_unplug_as_closed() -> None:
    devices = [VirtualUsbDevice(serial_no="PS-A"), VirtualUsbDevice(serial_no="PS-B")]
    backend = VirtualUsbBackend(*devices)
    transport = open_transport("usb://1209:7D01/PS-B", usb_backend=backend)
    try:
        assert isinstance(transport, UsbTransport)
        transport.write(b"to B" * 300)  # larger than one packet
        got = b""
        while len(got) < 1200:
            got += devices[1].device_read(4096, 0.5)[1]
        assert got == b"to B" * 300 and devices[0].device_read(10, 0.01)[1] == b""
        devices[1].device_write(b"from B")
        assert transport.read(3, 0.5) == b"fro" and transport.read(10, 0.5) == b"m B"  # nothing lost
        assert transport.read(10, 0.01) == b""
        with pytest.raises(TransportError) as busy:
            open_transport("usb://1209:7D01/PS-B", usb_backend=backend)  # a second owner
        assert "another program" in str(busy.value)
        devices[1].unplug()
        with pytest.raises(TransportClosed):
            transport.read(10, 0.1)
        with pytest.raises(TransportError) as missing:
            transport.open()
        assert "found serial numbers: PS-A" in str(missing.value)
        devices[1].replug()
        transport.open()
        devices[1].device_write(b"again")
        assert transport.read(10, 0.5) == b"again"
    finally:
        transport.close()


def test_auto_picks_the_serial_port_with_our_usb_id(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = PtyWire()
    ports = [SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None, serial_number=None, description="builtin"),
             SimpleNamespace(device=wire.slave_path, vid=0x1209, pid=0x7D01, serial_number="PS-1", description="POS")]
    monkeypatch.setattr(discovery.list_ports, "comports", lambda: ports)
    transport = open_transport("auto")
    try:
        assert isinstance(transport, AutoSerialTransport) and transport.url == "auto:1209:7D01"
        transport.write(b"hi")
        assert wire.read(10, 1.0) == b"hi"
    finally:
        transport.close()
        wire.close()
    with pytest.raises(TransportError) as error:
        open_transport("auto:0403:6001")
    assert "no serial port with USB ID 0403:6001" in str(error.value) and "/dev/ttyS0" in str(error.value)


@given(st.text(max_size=40))
def test_any_url_is_a_transport_or_a_transport_error(url: str) -> None:
    try:
        transport = make_transport(url)
    except TransportError as error:
        assert str(error)
    else:
        assert transport.url


def test_concurrent_read_and_write_on_tcp() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    transport = open_transport(f"socket://127.0.0.1:{server.getsockname()[1]}")
    peer, _ = server.accept()
    payload = os.urandom(200_000)
    received = bytearray()

    def echo() -> None:
        while len(received) < len(payload):
            chunk = peer.recv(65536)
            received.extend(chunk)
            peer.sendall(chunk)

    thread = threading.Thread(target=echo)
    thread.start()
    transport.write(payload)
    back = b""
    while len(back) < len(payload):
        back += transport.read(65536, 1.0)
    thread.join()
    assert back == payload
    transport.close()
    peer.close()
    server.close()
