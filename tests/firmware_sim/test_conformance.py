"""The conformance kit against the real headless system (sandbox, simulated POS, bridge processes),
with two HIS stand-ins built on the reference client: one that follows docs/his-interface.md (the
kit passes it) and one that sends a new `+` after a result fails step 6 (the kit fails it)."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from bridge import hisclient
from protocol.amount import parse_amount
from protocol.crypto import KeyRing
from protocol.messages import PayStatus
from protocol.registry import parse_device_csv

from firmware_sim.conformance.cli import render
from firmware_sim.conformance.scenarios import Demo, Kit, run
from firmware_sim.system import SystemOptions, start_system

SCENARIOS = ["collect", "decline", "partial-refunds", "duplicate-plus", "tampered-result", "forged-amount", "expiry",
             "withdrawal"]


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    system = start_system(SystemOptions(workdir=tmp_path_factory.mktemp("system"), bridge_port=0))
    try:
        yield system.demo_path
    finally:
        system.stop()


@dataclass
class ReferenceHis:
    """An HIS built on his-client: sends what the kit asks, verifies every result (step 6, the amount
    included), books verified results, alerts on a failed check and asks again with GET."""

    config: hisclient.ClientConfig
    resend_after_failure: bool = False  # the mistake the kit must catch: a new + under a new msg_id
    booked: dict[str, list[str]] = field(default_factory=dict)  # order_no -> booked amounts
    alerts: dict[str, int] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    orders: dict[str, tuple[str, str]] = field(default_factory=dict)  # msg_id -> (order_no, amount) sent

    def __post_init__(self) -> None:
        self.config = dataclasses.replace(self.config, on_alert=self._alert)

    def _alert(self, msg_id: str, failure: hisclient.ClientError) -> None:
        """Step 6 failed (his-client asks again by itself): book nothing, alert; the careless HIS
        instead sends a new + for the order under a new msg_id."""
        order, amount = self.orders[msg_id]
        self.alerts[order] = self.alerts.get(order, 0) + 1
        if self.resend_after_failure:
            self.resend_after_failure = False
            envelope = hisclient.seal(self.config, order, amount, hisclient.new_msg_id(self.config.terminal_id))
            threading.Thread(target=self._quietly, args=(envelope, order, amount), daemon=True).start()

    def _quietly(self, envelope, order: str, amount: str) -> None:
        try:
            hisclient.submit(self.config, envelope, order, 60, amount=parse_amount(amount))
        except hisclient.ClientError:
            pass

    def step(self, scenario: str, text: str, action: dict[str, object]) -> None:
        if "withdraw" in action:
            msg_id, order = str(action["withdraw"]), str(action["order_no"])
            target = lambda: hisclient.withdraw(self.config, msg_id, order, 30, amount=parse_amount(self.orders[msg_id][1]))  # noqa: E731
        else:
            expires_in = action.get("expires_in")
            target = lambda: self._run(str(action["order_no"]), str(action["send"]), expires_in)  # type: ignore[arg-type]  # noqa: E731
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _verified(self, outcome: hisclient.Outcome, amount: str) -> hisclient.Outcome:
        result = outcome.result
        if result is not None and result.amount != parse_amount(amount):
            raise hisclient.ClientError("auth_failed", f"result amount {result.amount} is not {amount}")
        return outcome

    def _run(self, order: str, amount: str, expires_in: int | None = None) -> None:
        expires_at = None if expires_in is None else int(time.time()) + int(expires_in)
        envelope = hisclient.seal(self.config, order, amount, hisclient.new_msg_id(self.config.terminal_id),
                                  expires_at=expires_at)
        self.orders[envelope.msg_id] = (order, amount)
        for attempt in range(5):
            try:
                if attempt == 0:
                    outcome = self._verified(hisclient.submit(self.config, envelope, order, 60, amount=parse_amount(amount)), amount)
                else:
                    outcome = self._verified(hisclient.query(self.config, envelope.msg_id, 30, instruction_ts=envelope.ts,
                                                             order_no=order, amount=parse_amount(amount)), amount)
            except hisclient.ClientError:
                self.alerts[order] = self.alerts.get(order, 0) + 1  # step 6 failed: book nothing, alert
                if self.resend_after_failure:
                    envelope = hisclient.seal(self.config, order, amount, hisclient.new_msg_id(self.config.terminal_id))
                    self.resend_after_failure = False
                    try:
                        hisclient.submit(self.config, envelope, order, 60, amount=parse_amount(amount))
                    except hisclient.ClientError:
                        pass
                    return
                continue
            result = outcome.result
            # docs/his-interface.md: pay_status drives the order; duplicate_order is the original
            # collection reported again, never a second payment.
            if (result is not None and result.pay_status in (PayStatus.SUCCESS, PayStatus.REFUNDED)
                    and result.error_code != "duplicate_order"):
                self.booked.setdefault(order, []).append(amount)
            return

    def _settled(self) -> None:
        for thread in self.threads:
            thread.join(90)

    def confirm(self, scenario: str, key: str, question: str, facts: dict[str, object]) -> bool:
        self._settled()
        order, amount = str(facts["order_no"]), str(facts["amount"])
        if key == "alerted":
            return self.alerts.get(order, 0) > 0
        if key == "not_booked":
            return self.booked.get(order, []).count(amount) == 1  # the first collection only
        if key == "nothing_booked":
            return not self.booked.get(order)
        return self.booked.get(order, []).count(amount) == 1

    def note(self, text: str) -> None:
        pass


def _his(demo_path: Path, kit: Kit, **kwargs: object) -> ReferenceHis:
    demo = Demo.load(demo_path)
    registry = demo_path.parent / "his" / "devices.csv"
    devices = {d.device_id: d.public_key for d in parse_device_csv(registry.read_text(encoding="utf-8")) if d.public_key}
    config = hisclient.ClientConfig(kit.proxy.url, demo.key, KeyRing([demo.key]), demo.terminal_id, devices)
    return ReferenceHis(config, **kwargs)  # type: ignore[arg-type]  # keyword options passed through to ReferenceHis, typed object here


class _Late:
    """The kit needs an operator before the proxy URL exists; the HIS needs the proxy URL."""

    his: ReferenceHis

    def step(self, *a: object) -> None:
        self.his.step(*a)  # type: ignore[arg-type]  # forwards the kit's operator call unchanged

    def confirm(self, *a: object) -> bool:
        return self.his.confirm(*a)  # type: ignore[arg-type]  # forwards the kit's operator call unchanged

    def note(self, text: str) -> None:
        pass


def test_a_his_that_follows_the_document_passes_every_scenario(demo_path: Path) -> None:
    late = _Late()
    kit = Kit(Demo.load(demo_path), late, timeout_s=45)
    late.his = _his(demo_path, kit)
    kit.proxy.start()
    try:
        reports = run(kit, SCENARIOS)
    finally:
        kit.proxy.stop()
    assert [r.name for r in reports if not r.passed] == [], render(reports)
    assert late.his.alerts  # the tampered and forged answers were refused in step 6


def test_a_his_that_sends_a_new_plus_after_a_failed_check_fails(demo_path: Path) -> None:
    late = _Late()
    kit = Kit(Demo.load(demo_path), late, timeout_s=20)
    late.his = _his(demo_path, kit, resend_after_failure=True)
    kit.proxy.start()
    try:
        (report,) = run(kit, ["tampered-result"])
    finally:
        kit.proxy.stop()
    failed = {c.name for c in report.checks if not c.passed}
    assert not report.passed and "HIS sent no new + for the order" in failed, render([report])


def test_a_his_that_never_withdraws_fails_the_withdrawal_scenario(demo_path: Path) -> None:
    late = _Late()
    kit = Kit(Demo.load(demo_path), late, timeout_s=8)
    late.his = _his(demo_path, kit)
    late.his.step = _ignoring_withdrawals(late.his.step)  # type: ignore[method-assign]  # a careless HIS: its step replaced on this one instance
    kit.proxy.start()
    try:
        (report,) = run(kit, ["withdrawal"])
    finally:
        kit.proxy.stop()
        kit.http.post(f"{kit.demo.sim_url}/v1/cancel", timeout=10)  # the cashier clears the screen for the next test
    assert not report.passed and "HIS sent a withdrawal" in {c.name for c in report.checks if not c.passed}, render([report])


def _ignoring_withdrawals(step):
    def step_(scenario: str, text: str, action: dict[str, object]) -> None:
        if "withdraw" not in action:
            step(scenario, text, action)
    return step_


class JavaHis:
    """docs/examples/java/HisClient.java as the HIS, run by the JDK: the kit's steps and questions
    become its command lines (send, withdraw, booked, nothing, alerted)."""

    QUESTIONS = {"booked": "booked", "not_booked": "booked", "alerted": "alerted", "nothing_booked": "nothing"}

    def __init__(self, demo_path: Path, kit: Kit, workdir: Path) -> None:
        import shutil
        import subprocess

        source = Path(__file__).resolve().parents[2] / "docs" / "examples" / "java"
        for name in ("HisEnvelope.java", "HisClient.java"):
            shutil.copy(source / name, workdir)
        subprocess.run(["javac", "HisEnvelope.java", "HisClient.java"], cwd=workdir, check=True, capture_output=True, timeout=180)
        demo = Demo.load(demo_path)
        self.log = (workdir / "java-his.log").open("w")
        self.proc = subprocess.Popen(["java", "-cp", str(workdir), "HisClient", kit.proxy.url, demo.key.secret.hex(), demo.key.kid,
                                      demo.terminal_id, str(demo_path.parent / "his" / "devices.csv")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def _say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def step(self, scenario: str, text: str, action: dict[str, object]) -> None:
        if "withdraw" in action:
            self._say(f"withdraw|{action['withdraw']}|{action['order_no']}")
        else:
            self._say(f"send|{action['order_no']}|{action['send']}|{action.get('expires_in', '-')}")

    def confirm(self, scenario: str, key: str, question: str, facts: dict[str, object]) -> bool:
        self._say(f"{self.QUESTIONS[key]}|{facts['order_no']}|{facts['amount']}")
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip() == "yes"

    def note(self, text: str) -> None:
        pass

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
        self.log.close()


@pytest.mark.slow  # a minute and a JDK: `make conformance-java`
@pytest.mark.skipif(__import__("shutil").which("javac") is None, reason="no JDK on this machine (make conformance-java)")
def test_the_java_example_passes_every_scenario(demo_path: Path, tmp_path: Path) -> None:
    late = _Late()
    kit = Kit(Demo.load(demo_path), late, timeout_s=45)
    kit.proxy.start()
    java = JavaHis(demo_path, kit, tmp_path)
    late.his = java  # type: ignore[assignment]  # the Java HIS speaks the same steps over a process, not the Python class
    try:
        reports = run(kit, SCENARIOS)
    finally:
        kit.proxy.stop()
        java.stop()
    assert [r.name for r in reports if not r.passed] == [], render(reports) + (tmp_path / "java-his.log").read_text()


def test_the_his_console_shows_a_decline_while_it_happens(demo_path: Path) -> None:
    """Issue 15, finding 1: the HIS operator learns every decline while the cashier may still scan."""
    import requests

    from bridge import his_console

    demo = Demo.load(demo_path)
    kit = Kit(demo, None)  # type: ignore[arg-type]  # only its cashier and patient helpers
    config = hisclient.load_config(__import__("argparse").Namespace(demo=str(demo_path), bridge=None, terminal=None,
                                                                     key_file=None, devices=None, kid=None))
    said: list[str] = []
    told = threading.Event()

    def say(line: str) -> None:
        said.append(line)
        if line.startswith("  !!! insufficient_funds"):
            told.set()

    order = f"CONSOLE{kit.run_id}"
    watcher = threading.Thread(target=his_console.send_and_watch, args=(config, order, "+3.30", say, 60), daemon=True)
    watcher.start()
    try:
        assert kit.wait_screen("awaiting_scan", order)
        kit.scan(kit.code("insufficient"))
        assert kit.wait_screen("declined", order)
        # The console long-polls in slices; the bridge answers a slice early when a new last_event arrives.
        assert told.wait(20), said
        kit.scan(kit.code())
        watcher.join(60)
    finally:
        requests.post(f"{demo.sim_url}/v1/dismiss", timeout=10)
        kit.proxy.server_close()
    assert any(line.startswith("VERIFIED RESULT  SUCCESS  +3.30") for line in said), said
