"""A hospital's authorisation of our Alipay third-party application, from its app_auth_code to the
refreshes that keep it alive (`gateway-admin alipay authorize | show | refresh`, the `alipay_token` job).

    auths = AlipayAuthorizations(directory, channels)
    auths.authorize("H002", code, actor="ops-li")     # exchange the code (once), store the token pair
    auths.refresh("H002", actor="ops-li")             # a new pair now (the job does it before the end)
    auths.query("H002")                               # what Alipay says the token covers

The token pair is sealed as the hospital's Alipay merchant credentials ({"app_auth_token",
"app_refresh_token"}, a new credentials version each time), so the channel clients of every gateway
process pick the new token up on their next request (the credentials-version check in
gateway.channel_clients); `alipay_authorizations` keeps what is not secret: who authorised, the
credentials version, when the token and the refresh token end, whether the hospital must authorise
again. Both are written, and audited, in one transaction.

The `alipay_token` job of each authorised hospital stays in the jobs table: due REFRESH_MARGIN_S
before the token (or its refresh token) ends (half-way through a short lifetime), it refreshes and
schedules itself again. When Alipay refuses the refresh token (ended, or replaced), the hospital
must authorise again: the row says so, an alarm tells the operators, and the job ends.

A refresh is a race at Alipay (the first refresh ends the refresh token): a second refresher that is
refused finds the credentials version moved on and takes the winner's pair instead of asking for a
re-authorisation. A gateway killed between Alipay's answer and the commit loses the new pair; the old
token still works for Alipay's grace period, and the old refresh token is dead: the next refresh asks
for a re-authorisation (the alarm says what to do). Codes and tokens never reach a log or the audit.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from protocol.messages import PayChannel

from gateway.alarms import AlarmKind, Alarms
from gateway.channel_clients import ChannelFactory
from gateway.channels.alipay_auth import AppAuthError, AppAuthGrant, AppAuthInfo, AuthFailure, check_code, exchange_code, query_token, refresh_token
from gateway.db import Tx
from gateway.errors import GatewayCode, GatewayError
from gateway.jobs import Job, JobKind, RunAgain, ms, schedule
from gateway.tenancy import Directory, Mode

if TYPE_CHECKING:
    from gateway.channel_work import WorkReport

log = logging.getLogger(__name__)

# Refresh this long before the token (or the refresh token) ends: Alipay's tokens live a year, so a
# month leaves room for a channel that is away for days. A short lifetime is refreshed half-way.
REFRESH_MARGIN_S = 30 * 86_400
# The job's one subject per hospital.
JOB_SUBJECT = "refresh"
REAUTHORIZE = ("ask the hospital's Alipay merchant to authorise our third-party application again (the authorisation link or QR "
               "code), then run: gateway-admin alipay authorize {hospital} --app-auth-code @code.txt")

_COLS = ("hospital_id, app_id, user_id, auth_app_id, key_version, token_expires_at, refresh_expires_at, authorized_at, refreshed_at, "
         "status, last_error")


@dataclass(frozen=True, slots=True)
class Authorization:
    hospital_id: str
    app_id: str  # our third-party application that holds it
    user_id: str  # the merchant's 2088... id (the hospital's Alipay merchant_id)
    auth_app_id: str  # the merchant's own app
    key_version: int  # the merchant_keys version holding the token pair
    token_expires_at: int
    refresh_expires_at: int
    authorized_at: int
    refreshed_at: int | None
    status: str  # "valid" or "reauthorize"
    last_error: str | None

    def refresh_due_at(self) -> int:
        """When the job refreshes: REFRESH_MARGIN_S before the first end, but not before half-way."""
        start = self.refreshed_at or self.authorized_at
        end = min(self.token_expires_at, self.refresh_expires_at)
        return max(start + (end - start) // 2, end - REFRESH_MARGIN_S)


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


class AlipayAuthorizations:
    def __init__(self, directory: Directory, channels: ChannelFactory, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.channels = channels
        self._clock = clock

    # --- reading --------------------------------------------------------------------------------

    def get(self, hospital_id: str, tx: Tx | None = None) -> Authorization:
        sql = f"SELECT {_COLS} FROM alipay_authorizations WHERE hospital_id = ?"
        if tx is not None:
            row = tx.one(sql, (hospital_id,))
        else:
            with self.directory.db.transaction(write=False) as rtx:
                row = rtx.one(sql, (hospital_id,))
        if row is None:
            self.directory.hospital(hospital_id)  # unknown_hospital first
            raise GatewayError(GatewayCode.ALIPAY_NOT_AUTHORIZED, f"hospital {hospital_id} has no Alipay authorisation from an app_auth_code; "
                               f"run: gateway-admin alipay authorize {hospital_id} --app-auth-code @code.txt")
        return Authorization(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), int(row[6]), int(row[7]),
                             None if row[8] is None else int(row[8]), row[9], row[10])

    def query(self, hospital_id: str) -> AppAuthInfo:
        """alipay.open.auth.token.app.query for the hospital's current token (what it covers, its status)."""
        key = self.directory.merchant_key(hospital_id, PayChannel.ALIPAY)
        token = key.secrets.get("app_auth_token")
        if not token:
            raise GatewayError(GatewayCode.ALIPAY_NOT_AUTHORIZED, f"hospital {hospital_id}'s Alipay credentials hold no app_auth_token")
        try:
            return query_token(self.channels.alipay_provider(), token)
        except AppAuthError as exc:
            raise _gateway_error(exc, hospital_id) from None

    # --- authorising ----------------------------------------------------------------------------

    def authorize(self, hospital_id: str, code: str, *, actor: str, merchant_id: str | None = None) -> Authorization:
        """Exchange the hospital's app_auth_code and store the token pair. `merchant_id`: the 2088... id
        the hospital's merchant must be (default: the one already on file, if any)."""
        hospital = self.directory.hospital(hospital_id)
        if hospital.mode is not Mode.SERVICE_PROVIDER:
            raise GatewayError(GatewayCode.BAD_INPUT, f"hospital {hospital_id} is in {hospital.mode.value} mode (its own Alipay app: merchant "
                               f"set); a third-party authorisation needs: gateway-admin hospital set {hospital_id} --mode service_provider")
        try:
            code = check_code(code)
        except ValueError as exc:
            raise GatewayError(GatewayCode.BAD_INPUT, str(exc)) from None
        digest = code_digest(code)
        with self.directory.db.transaction(write=False) as tx:
            spent = tx.one("SELECT hospital_id FROM alipay_authorizations WHERE code_digest = ?", (digest,))
        if spent is not None:
            raise GatewayError(GatewayCode.ALIPAY_AUTH_CODE_USED, f"this app_auth_code was already exchanged, for hospital {spent[0]}: its "
                               f"authorisation is in place (gateway-admin alipay show {spent[0]}); a code works once")
        expected = merchant_id or self._merchant_on_file(hospital_id)
        provider = self.channels.alipay_provider()
        try:
            grant = exchange_code(provider, code)
        except AppAuthError as exc:
            raise _gateway_error(exc, hospital_id) from None
        if expected is not None and grant.user_id != expected:
            raise GatewayError(GatewayCode.ALIPAY_MERCHANT_MISMATCH, f"the code was granted by Alipay merchant {grant.user_id}, not "
                               f"{hospital_id}'s {expected}: nothing stored. If {hospital_id} really moved to that merchant, ask it for a "
                               f"new code and run again with --merchant-id {grant.user_id}")
        now = int(self._clock())
        with self.directory.db.transaction() as tx:
            version = self._store(tx, hospital_id, grant, actor=actor)
            tx.execute("DELETE FROM alipay_authorizations WHERE hospital_id = ?", (hospital_id,))
            tx.execute(f"INSERT INTO alipay_authorizations ({_COLS}, code_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (hospital_id, provider.config.app_id, grant.user_id, grant.auth_app_id, version, now + grant.expires_in,
                        now + grant.re_expires_in, now, None, "valid", None, digest))
            auth = self.get(hospital_id, tx)
            schedule(tx, JobKind.ALIPAY_TOKEN, hospital_id, JOB_SUBJECT, due_at_ms=ms(auth.refresh_due_at()), now_ms=ms(now))
            self.directory.audit(tx, actor, "alipay.authorize", hospital_id, app_id=auth.app_id, user_id=auth.user_id,
                                 auth_app_id=auth.auth_app_id, version=version, token_expires_at=auth.token_expires_at,
                                 refresh_expires_at=auth.refresh_expires_at)
        log.info("alipay: hospital %s authorised app %s (merchant %s), credentials v%d", hospital_id, auth.app_id, auth.user_id, version)
        return auth

    def _merchant_on_file(self, hospital_id: str) -> str | None:
        try:
            return self.directory.merchant_id(hospital_id, PayChannel.ALIPAY)
        except GatewayError as exc:
            if exc.code is GatewayCode.NO_MERCHANT:
                return None
            raise

    def _store(self, tx: Tx, hospital_id: str, grant: AppAuthGrant, *, actor: str) -> int:
        return self.directory.put_merchant_key(tx, hospital_id, PayChannel.ALIPAY, grant.user_id,
                                               {"app_auth_token": grant.app_auth_token, "app_refresh_token": grant.app_refresh_token},
                                               actor=actor)

    # --- refreshing -----------------------------------------------------------------------------

    def refresh(self, hospital_id: str, *, actor: str) -> Authorization:
        """A new token pair now (alipay.open.auth.token.app, grant_type=refresh_token)."""
        auth = self.get(hospital_id)
        key = self.directory.merchant_key(hospital_id, PayChannel.ALIPAY)
        refresh = key.secrets.get("app_refresh_token")
        if key.version != auth.key_version or not refresh:
            raise GatewayError(GatewayCode.ALIPAY_NOT_AUTHORIZED, f"hospital {hospital_id}'s Alipay credentials were replaced by hand (merchant "
                               f"set/rotate) and hold no refresh token; run: gateway-admin alipay authorize {hospital_id} --app-auth-code ...")
        try:
            grant = refresh_token(self.channels.alipay_provider(), refresh)
        except AppAuthError as exc:
            if exc.kind not in (AuthFailure.REFRESH_EXPIRED, AuthFailure.REFRESH_INVALID):
                raise _gateway_error(exc, hospital_id) from None
            if self.directory.merchant_key_version(hospital_id, PayChannel.ALIPAY)[1] != key.version:
                log.info("alipay: hospital %s was refreshed by another process meanwhile", hospital_id)
                return self.get(hospital_id)
            self._needs_reauthorization(hospital_id, exc, actor=actor)
            raise _gateway_error(exc, hospital_id) from None
        if grant.user_id != auth.user_id:
            raise GatewayError(GatewayCode.ALIPAY_MERCHANT_MISMATCH, f"Alipay refreshed {hospital_id}'s token for merchant {grant.user_id}, "
                               f"not {auth.user_id}: nothing stored; check the authorisation with gateway-admin alipay show {hospital_id}")
        now = int(self._clock())
        with self.directory.db.transaction() as tx:
            version = self._store(tx, hospital_id, grant, actor=actor)
            tx.execute("UPDATE alipay_authorizations SET key_version = ?, token_expires_at = ?, refresh_expires_at = ?, refreshed_at = ?, "
                       "auth_app_id = ?, status = 'valid', last_error = NULL WHERE hospital_id = ?",
                       (version, now + grant.expires_in, now + grant.re_expires_in, now, grant.auth_app_id, hospital_id))
            fresh = self.get(hospital_id, tx)
            self.directory.audit(tx, actor, "alipay.refresh", hospital_id, user_id=fresh.user_id, version=version,
                                 retired_version=key.version, token_expires_at=fresh.token_expires_at,
                                 refresh_expires_at=fresh.refresh_expires_at)
        log.info("alipay: hospital %s token refreshed, credentials v%d, ends %d", hospital_id, version, fresh.token_expires_at)
        return fresh

    def _needs_reauthorization(self, hospital_id: str, exc: AppAuthError, *, actor: str) -> None:
        with self.directory.db.transaction() as tx:
            tx.execute("UPDATE alipay_authorizations SET status = 'reauthorize', last_error = ? WHERE hospital_id = ?",
                       (exc.message[:256], hospital_id))
            self.directory.audit(tx, actor, "alipay.reauthorize_needed", hospital_id, sub_code=exc.sub_code)
        try:
            Alarms(self.directory.db, clock=self._clock).raise_alarm(
                hospital_id=hospital_id, kind=AlarmKind.MERCHANT, reason="alipay_reauthorize", reference=PayChannel.ALIPAY.value,
                channel=PayChannel.ALIPAY.value, message=f"Alipay refused the refresh of the app_auth_token: {exc.message}")
        except GatewayError as alarm_error:
            log.warning("alipay: hospital %s: the alarm could not be stored: %s", hospital_id, alarm_error)

    # --- the job --------------------------------------------------------------------------------

    def run(self, job: Job, report: "WorkReport") -> None:
        """The `alipay_token` job: refresh when due, then due again before the new token ends."""
        try:
            auth = self.get(job.hospital_id)
        except GatewayError as exc:
            if exc.code in (GatewayCode.ALIPAY_NOT_AUTHORIZED, GatewayCode.UNKNOWN_HOSPITAL):
                return  # nothing to keep alive: the job ends
            raise
        if auth.status != "valid":
            return  # waiting for a re-authorisation, which schedules the job again
        now = self._clock()
        if now < auth.refresh_due_at():
            raise RunAgain(auth.refresh_due_at() - now)
        try:
            auth = self.refresh(job.hospital_id, actor="gateway")
        except GatewayError as exc:
            if exc.code in (GatewayCode.ALIPAY_REAUTHORIZE, GatewayCode.ALIPAY_NOT_AUTHORIZED):
                # Re-authorisation needed (the alarm is raised), or the credentials were replaced by hand:
                # nothing left to refresh; an authorisation schedules the job again.
                report.errors.append(f"{job.hospital_id} alipay token: {exc.code.value}")
                return
            raise
        report.tokens.append(job.hospital_id)
        raise RunAgain(max(0.0, auth.refresh_due_at() - self._clock()))


def _gateway_error(exc: AppAuthError, hospital_id: str) -> GatewayError:
    """The channel's refusal as a stable gateway code and what the operator does next."""
    again = REAUTHORIZE.format(hospital=hospital_id)
    if exc.kind is AuthFailure.CODE_INVALID:
        return GatewayError(GatewayCode.ALIPAY_AUTH_CODE_INVALID, f"Alipay refused the app_auth_code as wrong, already used or expired "
                            f"(codes work once, for a day) [{exc.message}]: {again}")
    if exc.kind is AuthFailure.APP_MISMATCH:
        return GatewayError(GatewayCode.ALIPAY_APP_MISMATCH, f"Alipay says the code or token was granted to another app than our third-party "
                            f"application (gateway-admin provider set alipay) [{exc.message}]: check which app's authorisation link the "
                            f"hospital opened, then {again}")
    if exc.kind in (AuthFailure.REFRESH_EXPIRED, AuthFailure.REFRESH_INVALID, AuthFailure.TOKEN_INVALID):
        return GatewayError(GatewayCode.ALIPAY_REAUTHORIZE, f"Alipay no longer accepts the hospital's authorisation [{exc.message}]: {again}")
    if exc.kind is AuthFailure.REJECTED:
        return GatewayError(GatewayCode.BAD_CONFIG, f"Alipay rejected our third-party application's request [{exc.message}]: check the "
                            "provider credentials (gateway-admin provider set alipay)")
    return GatewayError(GatewayCode.CHANNEL_UNAVAILABLE, f"Alipay gave no usable answer [{exc.message}]: nothing changed; try again")
