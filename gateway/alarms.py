"""Alarms: what the provider's operators must look at, because asking the channel again cannot
settle it (issue 17). Stored in the gateway's database, listed by `gateway-admin alarms list` with
what to do, closed by `gateway-admin alarms resolve` (audited).

Two sources, one table:
- a POS hands an instruction to a person (`POST /v1/alarm`, terminal.machine.NeedsPerson): its
  payment or refund is not ended and money may have moved;
- the gateway sees a hospital's channel settings fail: the channel REJECTED a request
  (`merchant_config`: a wrong key or app id; nothing moved) or its replies cannot be verified
  (`unverified_reply`: a wrong platform certificate or Alipay public key; the channel did act).
One open alarm per (hospital, reference, reason): a repeat raises its count and its last time,
so a POS re-reporting after a restart, or a thousand rejected payments, stay one line.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable

from gateway.db import Database, UniqueViolation
from gateway.errors import GatewayCode, GatewayError


class AlarmKind(str, enum.Enum):
    COLLECT = "collect"  # a payment handed to a person by a POS
    REFUND = "refund"  # a refund handed to a person by a POS
    MERCHANT = "merchant"  # a hospital's channel settings (raised by the gateway itself)


# Every reason an alarm can have, and what the operator does about it (the CLI prints it).
WHAT_TO_DO: dict[str, str] = {
    "unverified_reply": "the channel's replies fail verification with the key we hold (WeChat platform certificate / "
                        "API key, Alipay public key): fix it with `gateway-admin merchant rotate`; the channel DID act, so "
                        "check the transaction on the merchant platform, then press 'Check again' on the POS",
    "reverse_failing": "the POS could not cancel this payment after many tries and it may have been taken: check it on "
                       "the merchant platform (cancel or refund it there if needed), then press 'Check again' on the POS",
    "refund_abnormal": "WeChat Pay refund CHANGE (退款异常: the patient's card is closed or frozen): resolve it by hand on "
                       "the merchant platform (交易中心 - 退款), then press 'Check again' on the POS",
    "refund_unconfirmed": "the refund stayed unconfirmed after many queries (processing, or Alipay without refund_status): "
                          "do NOT refund again; check it on the merchant platform, then press 'Check again' on the POS",
    "notification_conflict": "a channel notification contradicts the ledger (Alipay: paid after declined or closed, a refund made "
                             "that the ledger has failed; WeChat Pay: a refund notification against the refund's settled state): "
                             "check the trade or refund on the merchant platform; if the money moved, settle it with the patient "
                             "(refund it there), then resolve this alarm",
    "alipay_reauthorize": "Alipay refused to refresh the hospital's app_auth_token (its refresh token ended, or the merchant withdrew "
                          "the authorisation): Alipay payments for it will stop when the token ends; ask the hospital's merchant to "
                          "authorise our third-party application again, run `gateway-admin alipay authorize HOSPITAL --app-auth-code "
                          "@code.txt`, then resolve this alarm",
    "platform_certificates": "WeChat Pay's platform certificate list could not be believed (signed by a certificate the gateway "
                             "does not hold: a rotation it missed, or not WeChat Pay): check the serial on the merchant platform "
                             "(API安全 - 平台证书), then `gateway-admin wechat certificates refresh HOSPITAL --expect-serial SERIAL`, "
                             "then resolve this alarm",
    "merchant_config": "the channel rejected requests for this hospital (a wrong or changed API key, app key or app_id): "
                       "nothing moved; fix the credentials with `gateway-admin merchant rotate`, then resolve this alarm",
}
POS_REASONS = frozenset({"unverified_reply", "reverse_failing", "refund_abnormal", "refund_unconfirmed"})


@dataclass(frozen=True, slots=True)
class Alarm:
    alarm_id: int
    hospital_id: str
    kind: AlarmKind
    reason: str
    reference: str  # out_trade_no / out_refund_no, or the channel for a merchant alarm
    order_no: str | None
    channel: str | None
    amount_fen: int | None
    device_id: str | None
    message: str
    count: int
    raised_at: int
    last_at: int
    resolved_at: int | None
    resolved_by: str | None
    resolution: str | None

    @property
    def what_to_do(self) -> str:
        return WHAT_TO_DO.get(self.reason, "look at it on the merchant platform")


_COLS = ("alarm_id, hospital_id, kind, reason, reference, order_no, channel, amount_fen, device_id, message, count, raised_at, "
         "last_at, resolved_at, resolved_by, resolution")


def _alarm(row: tuple) -> Alarm:
    return Alarm(int(row[0]), row[1], AlarmKind(row[2]), row[3], row[4], row[5], row[6], None if row[7] is None else int(row[7]),
                 row[8], row[9], int(row[10]), int(row[11]), int(row[12]), None if row[13] is None else int(row[13]), row[14], row[15])


class Alarms:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    def raise_alarm(self, *, hospital_id: str, kind: AlarmKind, reason: str, reference: str, message: str,
                    order_no: str | None = None, channel: str | None = None, amount_fen: int | None = None,
                    device_id: str | None = None) -> Alarm:
        """Open an alarm, or count a repeat of the open one with the same (hospital, reference, reason)."""
        if reason not in WHAT_TO_DO:
            raise GatewayError(GatewayCode.BAD_REQUEST, f"alarm reason {reason!r} is not one of {', '.join(sorted(WHAT_TO_DO))}")
        now = int(self._clock())
        for _ in range(2):  # a concurrent first report may win the insert: then count ours on its row
            with self.db.transaction() as tx:
                row = tx.one(f"SELECT {_COLS} FROM alarms WHERE hospital_id = ? AND reference = ? AND reason = ? AND resolved_at IS NULL"
                             + tx.for_update, (hospital_id, reference, reason))
                if row is not None:
                    tx.execute("UPDATE alarms SET count = count + 1, last_at = ?, message = ? WHERE alarm_id = ?",
                               (now, message[:512], int(row[0])))
                    return self._by_id(tx, int(row[0]))
                try:
                    alarm_id = tx.scalar(
                        "INSERT INTO alarms (hospital_id, kind, reason, reference, order_no, channel, amount_fen, device_id, message, "
                        "count, raised_at, last_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) RETURNING alarm_id",
                        (hospital_id, kind.value, reason, reference, order_no, channel, amount_fen, device_id, message[:512], now, now))
                except UniqueViolation:
                    continue
                return self._by_id(tx, int(alarm_id))  # type: ignore[arg-type]  # RETURNING alarm_id: an integer column, typed object by the driver-neutral scalar()
        raise GatewayError(GatewayCode.INTERNAL_ERROR, "the alarm could not be stored; report it again")

    def list(self, *, hospital_id: str | None = None, include_resolved: bool = False) -> list[Alarm]:
        sql, params = f"SELECT {_COLS} FROM alarms WHERE 1 = 1", []
        if hospital_id is not None:
            sql += " AND hospital_id = ?"
            params.append(hospital_id)
        if not include_resolved:
            sql += " AND resolved_at IS NULL"
        with self.db.transaction(write=False) as tx:
            return [_alarm(row) for row in tx.all(sql + " ORDER BY raised_at, alarm_id", params)]

    def resolve(self, alarm_id: int, *, actor: str, note: str) -> Alarm:
        if not note.strip():
            raise GatewayError(GatewayCode.BAD_INPUT, "say what was done (--note), for the audit trail")
        now = int(self._clock())
        with self.db.transaction() as tx:
            alarm = self._by_id(tx, alarm_id)
            if alarm.resolved_at is not None:
                raise GatewayError(GatewayCode.BAD_INPUT, f"alarm {alarm_id} was resolved by {alarm.resolved_by} already")
            tx.execute("UPDATE alarms SET resolved_at = ?, resolved_by = ?, resolution = ? WHERE alarm_id = ?",
                       (now, actor, note[:512], alarm_id))
            tx.execute("INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
                       (now, actor, "alarm.resolve", str(alarm_id),
                        '{"reason": "%s", "reference": "%s"}' % (alarm.reason, alarm.reference)))
            return self._by_id(tx, alarm_id)

    def _by_id(self, tx, alarm_id: int) -> Alarm:
        row = tx.one(f"SELECT {_COLS} FROM alarms WHERE alarm_id = ?", (alarm_id,))
        if row is None:
            raise GatewayError(GatewayCode.NOT_FOUND, f"no alarm {alarm_id}")
        return _alarm(row)
