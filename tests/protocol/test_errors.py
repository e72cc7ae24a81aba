"""protocol/errors.py: one error base with a stable `.code` for every error that crosses a boundary.

The test finds every exception class the shipped packages define (by reading their source, so a new
one cannot hide), imports it, and checks that it is a `CodedError` whose code is a stable snake_case
name, unless it is one of the few internal signals listed here with the reason it never leaves its
module. It also pins the codes: renaming one breaks log searches, exit-code scripts and HIS vendors'
code, so it must be a deliberate change to this table.
"""

from __future__ import annotations

import ast
import enum
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import CodedError, ErrorCode, ProtocolError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("protocol", "local_storage", "bridge", "terminal", "posflash", "gateway", "reconcile", "firmware_sim")
CODE = re.compile(r"[a-z][a-z0-9_]*\Z")

# Exceptions that never cross a boundary: each is raised and caught inside its own module (or is a
# fault injected by the tests and the simulator, which no user meets), with the reason.
INTERNAL = {
    "terminal.journal.PowerLostAtCommit": "a simulated power cut (BaseException): stops the process in tests and the simulator",
    "firmware_sim.storage.PowerLostMidWrite": "the simulator's power cut on its virtual flash; the simulator reboots on it",
    "terminal.journal.StaleState": "a lost race between two threads on one journal row; the caller retries",
    "terminal.machine.IllegalTransition": "a programming error in the transition table, never a user's input",
    "posflash.flasher._LinkLost": "private: turned into a FlashError(interrupted) by the flasher",
    "posflash.flasher._Stopped": "private: the flasher's own stop signal",
    "terminal.ui.finger.TapMissed": "an assertion of the screen tests' finger (a test harness shipped with the UI)",
    "terminal.ui.offscreen.Timeout": "an assertion of the offscreen test driver",
    "terminal.ui.offscreen.AppDied": "an assertion of the offscreen test driver",
    "firmware_sim.sandbox.alipay_api._Answer": "private: the sandbox turns it into Alipay's own error reply in the same module",
    "firmware_sim.sandbox.alipay_tenants.AuthRefusal": "the sandbox's token store refusing a code or refresh token; alipay_api turns it into Alipay's own 40002 reply (sub_code, sub_msg)",
    "firmware_sim.sandbox.wechat_api._Refuse": "private: the sandbox turns it into WeChat Pay's own error reply in the same module",
    "firmware_sim.sandbox.wechat_v3_api._Error": "private: the sandbox turns it into WeChat Pay APIv3's own error reply in the same module",
    "gateway.db.UniqueViolation": "the database adapter's signal; the gateway turns it into GatewayError(exists)",
    "gateway.service._AlreadyStarted": "private: pay() found its collection already in the ledger; handled by _started in the same module",
    "gateway.ledger._OrderTaken": "private: start_payment turns it into duplicate_order, or into the copy's outcome when its own request got there first",
    "gateway.ledger.Unbatched": "the one-transaction payment path saying 'take the ordinary path': caught by gateway.service, which rolls back and runs the full checks",
    "terminal.gateway_transport.TransportError": "no complete answer from the gateway: terminal.gateway_client turns it into its `network` / `tls` outcome (status 0) in the next call up",
    "gateway.jobs.RunAgain": "a job's work saying 'not finished, again later': caught by the job runner (gateway.channel_work), which reschedules the job",
}


def _exception_classes() -> list[str]:
    """Dotted names of every class in the shipped packages that derives, by name, from an exception."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and any(_looks_like_exception(b) for b in node.bases):
                    found.append(f"{module}.{node.name}")
    return found


def _looks_like_exception(base: ast.expr) -> bool:
    name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
    return bool(re.search(r"(Error|Exception|Cut|Refused|Reset|Closed|Missed|Timeout|Died|Lost|Stopped|"
                          r"Unavailable|Violation|Transition|State|Input|Found|NotUp|NotSupported)$", name))


def _load(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


ALL = _exception_classes()
CROSSING = [name for name in ALL if name not in INTERNAL and issubclass(_load(name), BaseException)]


def test_the_scan_finds_the_known_boundary_errors() -> None:
    # A scan that found nothing would pass everything below.
    assert {"protocol.errors.ProtocolError", "protocol.flash.FlashError", "bridge.config.BridgeConfigError",
            "terminal.config.DeviceConfigError", "gateway.errors.GatewayError"} <= set(CROSSING)
    assert len(CROSSING) > 40


def test_every_internal_signal_listed_still_exists() -> None:
    assert set(INTERNAL) <= set(ALL)


@pytest.mark.parametrize("name", CROSSING)
def test_each_error_that_crosses_a_boundary_has_a_stable_code(name: str) -> None:
    cls = _load(name)
    assert issubclass(cls, CodedError), f"{name} crosses a boundary: derive it from protocol.errors.CodedError"
    code = cls.code
    value = code.value if isinstance(code, enum.Enum) else code
    assert isinstance(value, str) and CODE.match(value), f"{name}.code {code!r} is not a snake_case name"


def test_an_instance_code_keeps_its_enum_and_the_class_default_stays_a_name() -> None:
    exc = ProtocolError(ErrorCode.REPLAY, "seen before")
    assert isinstance(exc, CodedError) and exc.code is ErrorCode.REPLAY and exc.code == "replay"


# Class-level codes, pinned: a rename breaks everyone who matches on them.
PINNED = {
    "bridge.config.BridgeConfigError": "bridge_config",
    "terminal.config.DeviceConfigError": "device_config",
    "terminal.gateway_client.GatewayConfigError": "gateway_config",
    "protocol.keyfile.KeyFileError": "key_file",
    "protocol.crypto.AuthenticationError": "auth_failed",
    "protocol.signing.SignatureError": "bad_signature",
    "protocol.link.handshake.HandshakeError": "handshake_refused",
    "protocol.link.session.LinkNotUp": "link_down",
    "terminal.journal.JournalUnavailable": "storage_unavailable",
    "bridge.journal.JournalIntegrityError": "journal_integrity",
    "gateway.channels.errors.ChannelConfigError": "channel_config",
}


@pytest.mark.parametrize("name,code", sorted(PINNED.items()))
def test_pinned_codes_do_not_change(name: str, code: str) -> None:
    assert _load(name).code == code


def test_no_two_classes_share_one_class_level_code_by_accident() -> None:
    owners: dict[str, list[str]] = {}
    for name in CROSSING:
        cls = _load(name)
        code = cls.__dict__.get("code")
        if isinstance(code, str) and not isinstance(code, enum.Enum):
            owners.setdefault(code, []).append(name)
    assert {code: names for code, names in owners.items() if len(names) > 1} == {}
