"""A real, reproducible link exchange as an annotated hex dump (docs/link-protocol.md shows it).

Two `Link`s, host and device, run the handshake, one instruction and its result, with fixed keys,
ephemeral keys and nonces, so the dump in the document is byte-for-byte what this code sends; a test
regenerates it and compares. `python -m protocol.link.transcript` prints the Markdown block.
"""

from __future__ import annotations

import sys

from protocol import signing
from protocol.amount import parse_amount
from protocol.crypto import SharedKey
from protocol.envelope import seal_instruction, seal_result
from protocol.link.app import InstructionMsg, ResultMsg, encode_app
from protocol.link.decoder import Corrupt, FrameDecoder
from protocol.link.frame import FrameType
from protocol.link.handshake import DeviceIdentity, HostTrust
from protocol.link.session import DeviceHandshake, HostHandshake, Link, Role
from protocol.messages import Instruction, PayChannel, PayStatus, Result

DEVICE_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
BRIDGE_SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
HOST_EPHEMERAL = bytes.fromhex("c0ffee00" * 8)
DEVICE_EPHEMERAL = bytes.fromhex("0badcafe" * 8)
IDENTITY = DeviceIdentity("D-SN-000123", "HP-POS-1", "SN000123", "1.2.0", ("pay", "refund", "flash"))
KEY = SharedKey("k2026a", "AES-256-GCM", bytes(range(32)))
NOW = 1_795_000_000


def exchange() -> list[tuple[str, bytes]]:
    """[(direction, wire bytes)] in the order they cross the cable."""
    host = Link(
        Role.HOST,
        host=HostHandshake({IDENTITY.device_id: signing.public_key(DEVICE_SEED)}.get, BRIDGE_SEED,
                           lambda: b'{"bridge":"his-bridge","clock":1795000000}', lambda n: HOST_EPHEMERAL[:n]),
    )
    trust = HostTrust(bridges=frozenset({signing.public_key(BRIDGE_SEED)}))
    device = Link(Role.DEVICE, device=DeviceHandshake(IDENTITY, DEVICE_SEED, trust, lambda n: DEVICE_EPHEMERAL[:n]))
    log: list[tuple[str, bytes]] = []

    def host_to_device() -> None:
        data = host.data_to_send()
        if data:
            log.append(("bridge -> POS", data))
            device.receive_bytes(data, 0.0)

    def device_to_host() -> None:
        data = device.data_to_send()
        if data:
            log.append(("POS -> bridge", data))
            host.receive_bytes(data, 0.0)

    host.start(0.0)
    device.start(0.0)
    host_to_device()  # HELLO_REQUEST
    device_to_host()  # HELLO
    host_to_device()  # HELLO_ACK
    instruction = Instruction("T0001", "MZ20261122000123", parse_amount("+12.50"))
    envelope = seal_instruction(instruction, key=KEY, msg_id="HIS-0001-000042", ts=NOW, nonce=bytes(12))
    host.send(FrameType.DATA, encode_app(InstructionMsg(envelope)), 0.0)
    host_to_device()  # DATA (instruction)
    device_to_host()  # ACK
    result = Result("D-SN-000123", "MZ20261122000123", "4200001234202611220000000001", PayStatus.SUCCESS, PayChannel.WECHAT, parse_amount("+12.50"), NOW + 42)
    sealed = seal_result(result, key=KEY, msg_id="R-D-SN-000123-000001", reply_to="HIS-0001-000042", ts=NOW + 42, nonce=bytes(range(12)))
    device.send(FrameType.DATA, encode_app(ResultMsg(sealed)), 0.0)
    device_to_host()  # DATA (result)
    host_to_device()  # ACK
    return log


def _hexdump(data: bytes) -> list[str]:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"  {offset:04x}  {hexes:<47}  {text}")
    return lines


def render() -> str:
    out = ["```"]
    for direction, data in exchange():
        for frame in FrameDecoder().feed(data):
            if isinstance(frame, Corrupt):
                raise AssertionError(f"the transcript's own {direction} bytes do not decode: {frame}")
            name = FrameType(frame.type).name
            out.append(f"{direction}  {name} seq={frame.seq} payload={len(frame.payload)} bytes")
        out.extend(_hexdump(data))
        out.append("")
    out[-1] = "```"
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
