"""A short demonstration of the protocol core (what `make run` shows until the system runs).

Seals an instruction with each cipher suite, frames it for the link, decodes it, and shows a few
refusals, with the stable error codes HIS vendors will see.
"""

from __future__ import annotations

import os
import time

from protocol.amount import parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import receive_instruction, seal_instruction
from protocol.errors import ProtocolError
from protocol.link.decoder import FrameDecoder
from protocol.link.frame import OVERHEAD, FrameType, encode_frame, wire_time_s
from protocol.messages import Instruction


def main() -> None:
    now = int(time.time())
    for suite, size in (("AES-256-GCM", 32), ("SM4-GCM", 16)):
        key = SharedKey("k2026a", suite, os.urandom(size))
        instruction = Instruction("T0001", "MZ20261122000123", parse_amount("+12.50"))
        envelope = seal_instruction(instruction, key=key, msg_id="HIS-0001-000042", ts=now, nonce=os.urandom(12))
        wire = encode_frame(FrameType.DATA, 0, envelope.to_bytes())
        (frame,) = FrameDecoder().feed(wire)
        received = receive_instruction(frame.payload, KeyRing([key]), now=now)  # type: ignore[union-attr]
        print(f"{suite}: envelope {len(envelope.to_bytes())} bytes, frame {len(wire)} bytes "
              f"(overhead {OVERHEAD}), {wire_time_s(len(wire), 115200) * 1000:.1f} ms at 115200 baud")
        print(f"  accepted: {received.message}")
    key = SharedKey("k2026a", "AES-256-GCM", os.urandom(32))
    for text in ("+12.5", "-0.00", "+1e3", "++1.00", "+012.50"):
        try:
            parse_amount(text)
        except ProtocolError as exc:
            print(f"refused {text!r}: {exc.code.value}: {exc.message}")


if __name__ == "__main__":
    main()
