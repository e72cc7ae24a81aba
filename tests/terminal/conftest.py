"""A channel-sandbox process for the terminal's end-to-end tests, and a POS wired to it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from protocol.messages import PayChannel, Result
from gateway.channels import build_clients, settings_from_sandbox
from terminal.service import ScanStatus, TerminalService
from tests.terminal.helpers import Bridge, His, make_config, open_service

# Fast cadence for tests (the channels' own are 5 s / 30 s): poll every 0.1 s, reverse after 1.5 s,
# give up on a silent reply after 1 s, no wait before a reverse (WeChat Pay's own 15 s is tested with
# an injected clock in test_needs_person.py).
FAST = {"query_interval_s": 0.1, "pay_deadline_s": 1.5, "read_timeout_s": 1.0, "reverse_not_before_s": 0.0}


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    process = SandboxProcess(str(tmp_path_factory.mktemp("terminal-sandbox")))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def channel_settings(sandbox: SandboxProcess) -> dict:
    return settings_from_sandbox(sandbox.credentials_path, wechat=FAST, alipay=FAST)


def new_order_no() -> str:
    return "MZ" + uuid.uuid4().hex[:20]


@dataclass
class Pos:
    """A terminal service on a fresh journal, talking to the sandbox, with HIS and the bridge."""

    service: TerminalService
    bridge: Bridge
    his: His
    sandbox: SandboxProcess

    def issue(self, channel: PayChannel, balance: str = "100.00", behaviour: str = "success") -> str:
        return str(self.sandbox.issue_code(channel.value, balance, behaviour)["code"])

    def balance(self, code: str) -> int:
        return int(self.sandbox.account(code)["balance_fen"])

    def send(self, order_no: str, amount: str, msg_id: str | None = None) -> str:
        envelope = self.his.envelope(order_no, amount, msg_id=msg_id)
        self.service.submit_instruction(envelope)
        return envelope.msg_id

    def collect(self, order_no: str, amount: str, code: str) -> Result:
        msg_id = self.send(order_no, amount)
        assert self.service.scan(code).status is ScanStatus.ACCEPTED
        return self.bridge.result(msg_id)


def make_pos(path, sandbox, channel_settings, **config_kwargs) -> Pos:
    config = make_config(**config_kwargs)
    service = open_service(path, config, build_clients(channel_settings))
    return Pos(service, Bridge(service), His(), sandbox)


@pytest.fixture
def pos(tmp_path, sandbox, channel_settings) -> Iterator[Pos]:
    p = make_pos(tmp_path / "journal.db", sandbox, channel_settings)
    try:
        yield p
    finally:
        p.service.close()


@pytest.fixture(params=[PayChannel.WECHAT, PayChannel.ALIPAY], ids=["wechat", "alipay"])
def channel(request: pytest.FixtureRequest) -> PayChannel:
    return request.param
