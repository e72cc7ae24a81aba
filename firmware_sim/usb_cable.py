"""A simulated USB cable between processes: the simulator's pyusb backend, served on loopback.

The virtual USB bus (firmware_sim.usb_backend) lives in the device's process; the bridge runs in
another (`make run`). `UsbCableServer` serves the device process's `VirtualUsbBackend` on
127.0.0.1 (one JSON line per pyusb backend call, one connection per calling thread);
`RemoteUsbBackend` is a `usb.backend.IBackend` in the other process that forwards each call, so
pyusb's own code and the bridge's transports run unchanged, exactly as over libusb.

    python -m firmware_sim.usb_cable --cable 127.0.0.1:PORT --config bridge/config.toml

runs the real bridge (bridge.daemon.serve) with that backend: what `make run LINK=aoa` starts. Errors
cross as libusb's (USBError with errno, USBTimeoutError); a lost cable server looks like a device gone.
"""

from __future__ import annotations

import argparse
import array
import errno
import json
import socket
import socketserver
import sys
import threading
from typing import Any

import usb.backend
import usb.core

from firmware_sim.usb_backend import LIBUSB_ERROR_NO_DEVICE, VirtualUsbBackend, _Descriptor, _DeviceRef, _Handle

CALLS = ("enumerate_devices", "get_device_descriptor", "get_configuration_descriptor", "get_interface_descriptor",
         "get_endpoint_descriptor", "open_device", "close_device", "set_configuration", "get_configuration",
         "set_interface_altsetting", "claim_interface", "release_interface", "bulk_write", "bulk_read",
         "ctrl_transfer", "clear_halt", "reset_device", "is_kernel_driver_active", "detach_kernel_driver",
         "attach_kernel_driver")
# Calls whose first argument is an enumerated device (or nothing); all others take an open handle.
DEVICE_CALLS = ("enumerate_devices", "get_device_descriptor", "get_configuration_descriptor",
                "get_interface_descriptor", "get_endpoint_descriptor", "open_device")


# ----------------------------------------------------------------------------- the device's side


class UsbCableServer:
    def __init__(self, backend: VirtualUsbBackend, host: str = "127.0.0.1", port: int = 0) -> None:
        self.backend = backend
        self._handles: dict[int, _Handle] = {}
        self._next = 0
        self._lock = threading.Lock()
        cable = self

        class Connection(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    answer = cable.call(json.loads(line))
                    self.wfile.write(json.dumps(answer).encode("utf-8") + b"\n")
                    self.wfile.flush()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer((host, port), Connection)
        self._server.daemon_threads = True
        self.address = "%s:%d" % self._server.server_address[:2]

    def start(self) -> "UsbCableServer":
        threading.Thread(target=self._server.serve_forever, name="usb-cable", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _ref(self, key: list[int]) -> _DeviceRef:
        return _DeviceRef(self.backend.devices[key[0]], key[1])

    def _encode(self, value: object) -> object:
        if isinstance(value, _DeviceRef):
            return {"dev": [self.backend.devices.index(value.device), value.generation]}
        if isinstance(value, _Handle):
            with self._lock:
                self._next += 1
                self._handles[self._next] = value
            return {"handle": self._next}
        if isinstance(value, _Descriptor):
            return {"desc": value.fields}
        if isinstance(value, list):
            return [self._encode(v) for v in value]
        return value

    def call(self, request: dict[str, Any]) -> dict[str, object]:
        op, args = request["op"], list(request["args"])
        if op not in CALLS:
            return {"error": "unknown", "message": op}
        if op not in DEVICE_CALLS:  # the first argument is an open handle
            handle = self._handles.get(args[0])
            if handle is None:
                return {"error": "usb", "args": ["Invalid handle", -2, errno.EINVAL]}
            args[0] = handle
        elif op != "enumerate_devices":
            args[0] = self._ref(args[0])
        try:
            if op == "bulk_write":
                args[3] = array.array("B", bytes.fromhex(args[3]))
            elif op == "bulk_read":
                buff = array.array("B", bytes(args[3]))
                n = self.backend.bulk_read(*args[:3], buff, args[4])
                return {"ok": buff[:n].tobytes().hex()}
            elif op == "ctrl_transfer":
                if args[1] & 0x80:
                    buff = array.array("B", bytes(args[5]))
                    n = self.backend.ctrl_transfer(*args[:5], buff, args[6])
                    return {"ok": buff[:n].tobytes().hex()}
                args[5] = array.array("B", bytes.fromhex(args[5]))
            result = getattr(self.backend, op)(*args)
            if op == "close_device":
                with self._lock:
                    self._handles.pop(request["args"][0], None)
            return {"ok": self._encode(result)}
        except usb.core.USBTimeoutError as exc:
            return {"error": "timeout", "args": [exc.strerror, exc.backend_error_code, exc.errno]}
        except usb.core.USBError as exc:
            return {"error": "usb", "args": [exc.strerror, exc.backend_error_code, exc.errno]}
        except IndexError as exc:
            return {"error": "index", "message": str(exc)}


# ----------------------------------------------------------------------------- the host's side


class _RemoteRef:
    def __init__(self, key: list[int]) -> None:
        self.key = key


class _RemoteHandle:
    def __init__(self, key: int) -> None:
        self.key = key


class RemoteUsbBackend(usb.backend.IBackend):
    """pyusb backend forwarding every call to a UsbCableServer at `address` (HOST:PORT)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.address = (host, int(port))
        self._local = threading.local()

    def _conn(self) -> tuple[socket.socket, Any]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            sock = socket.create_connection(self.address, timeout=30)
            conn = (sock, sock.makefile("rb"))
            self._local.conn = conn
        return conn

    def _call(self, op: str, *args: object) -> object:
        try:
            sock, reader = self._conn()
            sock.sendall(json.dumps({"op": op, "args": list(args)}).encode("utf-8") + b"\n")
            line = reader.readline()
        except OSError:
            self._local.conn = None
            line = b""
        if not line:
            self._local.conn = None
            raise usb.core.USBError("No such device (the simulated USB cable is gone)", LIBUSB_ERROR_NO_DEVICE, errno.ENODEV)
        answer = json.loads(line)
        error = answer.get("error")
        if error == "timeout":
            raise usb.core.USBTimeoutError(*answer["args"])
        if error == "usb":
            raise usb.core.USBError(*answer["args"])
        if error == "index":
            raise IndexError(answer["message"])
        if error:
            raise NotImplementedError(answer.get("message"))
        return self._decode(answer["ok"])

    def _decode(self, value: object) -> object:
        if isinstance(value, dict):
            if "dev" in value:
                return _RemoteRef(value["dev"])
            if "handle" in value:
                return _RemoteHandle(value["handle"])
            if "desc" in value:
                return _Descriptor(value["desc"])
        if isinstance(value, list):
            return [self._decode(v) for v in value]
        return value

    def enumerate_devices(self):
        return self._call("enumerate_devices")

    def get_device_descriptor(self, dev: _RemoteRef) -> object:
        return self._call("get_device_descriptor", dev.key)

    def get_configuration_descriptor(self, dev: _RemoteRef, config: int) -> object:
        return self._call("get_configuration_descriptor", dev.key, config)

    def get_interface_descriptor(self, dev: _RemoteRef, intf: int, alt: int, config: int) -> object:
        return self._call("get_interface_descriptor", dev.key, intf, alt, config)

    def get_endpoint_descriptor(self, dev: _RemoteRef, ep: int, intf: int, alt: int, config: int) -> object:
        return self._call("get_endpoint_descriptor", dev.key, ep, intf, alt, config)

    def open_device(self, dev: _RemoteRef) -> object:
        return self._call("open_device", dev.key)

    def close_device(self, dev_handle: _RemoteHandle) -> None:
        self._call("close_device", dev_handle.key)

    def set_configuration(self, dev_handle: _RemoteHandle, config_value: int) -> None:
        self._call("set_configuration", dev_handle.key, config_value)

    def get_configuration(self, dev_handle: _RemoteHandle) -> object:
        return self._call("get_configuration", dev_handle.key)

    def set_interface_altsetting(self, dev_handle: _RemoteHandle, intf: int, altsetting: int) -> None:
        self._call("set_interface_altsetting", dev_handle.key, intf, altsetting)

    def claim_interface(self, dev_handle: _RemoteHandle, intf: int) -> None:
        self._call("claim_interface", dev_handle.key, intf)

    def release_interface(self, dev_handle: _RemoteHandle, intf: int) -> None:
        self._call("release_interface", dev_handle.key, intf)

    def bulk_write(self, dev_handle: _RemoteHandle, ep: int, intf: int, data: array.array, timeout: int) -> int:
        return int(self._call("bulk_write", dev_handle.key, ep, intf, data.tobytes().hex(), timeout))

    def bulk_read(self, dev_handle: _RemoteHandle, ep: int, intf: int, buff: array.array, timeout: int) -> int:
        data = bytes.fromhex(str(self._call("bulk_read", dev_handle.key, ep, intf, len(buff) * buff.itemsize, timeout)))
        buff[: len(data)] = array.array("B", data)
        return len(data)

    def ctrl_transfer(self, dev_handle: _RemoteHandle, bmRequestType: int, bRequest: int, wValue: int, wIndex: int,
                      data: array.array, timeout: int) -> int:
        if bmRequestType & 0x80:
            got = bytes.fromhex(str(self._call("ctrl_transfer", dev_handle.key, bmRequestType, bRequest, wValue,
                                               wIndex, len(data), timeout)))
            data[: len(got)] = array.array("B", got)
            return len(got)
        sent = data.tobytes() if data is not None else b""
        return int(self._call("ctrl_transfer", dev_handle.key, bmRequestType, bRequest, wValue, wIndex,
                              sent.hex(), timeout))

    def clear_halt(self, dev_handle: _RemoteHandle, ep: int) -> None:
        self._call("clear_halt", dev_handle.key, ep)

    def reset_device(self, dev_handle: _RemoteHandle) -> None:
        self._call("reset_device", dev_handle.key)

    def is_kernel_driver_active(self, dev_handle: _RemoteHandle, intf: int) -> bool:
        return bool(self._call("is_kernel_driver_active", dev_handle.key, intf))

    def detach_kernel_driver(self, dev_handle: _RemoteHandle, intf: int) -> None:
        self._call("detach_kernel_driver", dev_handle.key, intf)

    def attach_kernel_driver(self, dev_handle: _RemoteHandle, intf: int) -> None:
        self._call("attach_kernel_driver", dev_handle.key, intf)


def main(argv: list[str] | None = None) -> int:
    """The real bridge (his-bridge serve) on the simulated USB cable of a `pos-sim run --aoa`."""
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.usb_cable",
                                     description="Run his-bridge serve with the simulator's USB bus (pos-sim run "
                                                 "--aoa prints its cable address) instead of libusb.")
    parser.add_argument("--cable", required=True, help="HOST:PORT of the simulated USB cable (usb_cable in sim.json)")
    parser.add_argument("--config", required=True, help="the bridge's config.toml")
    args = parser.parse_args(argv)
    from bridge.config import BridgeConfigError
    from bridge.daemon import serve

    try:
        return serve(args.config, usb_backend=RemoteUsbBackend(args.cable))
    except BridgeConfigError as exc:
        print(f"his-bridge: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
