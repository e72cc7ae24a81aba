"""A POS process for the real-crash test: runs one instruction and dies (os._exit) at a chosen commit.

    python -m tests.terminal.crash_child CONFIG JOURNAL ENVELOPE_JSON CODE [LABEL PHASE]

Prints one JSON line {"result": <result envelope>} if it gets that far.
"""

from __future__ import annotations

import json
import os
import sys
import time

from protocol.envelope import parse_envelope
from protocol.link.app import ResultMsg
from gateway.channels import build_clients
from terminal.factory import open_terminal
from terminal.journal import CommitPoint
from terminal.view import Screen

PIN = "246810"
DEVICE_SEED = bytes(range(100, 132))  # the same device key as tests/terminal/helpers.py


def main() -> int:
    config, journal, envelope_path, code = sys.argv[1:5]
    label, phase = (sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else (None, None)

    def die(point: CommitPoint) -> None:
        if point.label == label and point.phase == phase:
            os._exit(137)  # power gone: no cleanup, no flush, nothing

    with open(os.path.join(os.path.dirname(config), "channels.json"), encoding="utf-8") as handle:
        clients = build_clients(json.load(handle))
    service = open_terminal(config, journal, device_key_seed=DEVICE_SEED, clients=clients, on_commit=die)
    service.start()
    service.link_up()
    with open(envelope_path, encoding="utf-8") as handle:
        envelope = parse_envelope(handle.read())
    service.submit_instruction(envelope)
    # A safety bound only (the loop ends at the result or the chosen death): generous, because under a
    # loaded machine 20 s was not always enough for a refund and this test failed now and then.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        message = service.outbox.get(timeout=0.02)
        if isinstance(message, ResultMsg) and message.envelope.reply_to == envelope.msg_id:
            service.mark_delivered(message.envelope.msg_id)
            print(json.dumps({"result": message.envelope.to_json_obj()}), flush=True)
            service.close()
            return 0
        view = service.view()
        if view.screen is Screen.AWAITING_SCAN:
            service.scan(code)
        elif view.screen is Screen.AWAITING_SUPERVISOR:
            service.confirm_refund(PIN)
    return 1


if __name__ == "__main__":
    sys.exit(main())
