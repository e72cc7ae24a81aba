"""`gateway-admin`: the provider's operators onboard hospitals and manage the device fleet.

A thin layer over `gateway.tenancy`: it parses arguments, reads files, prints results, and turns a
GatewayError into its message and exit status 1 (2 is bad usage). Every action that changes
something is written to the audit table in the same transaction as the change; `--actor` (default:
the login name) says who did it. The database is `--db` or GATEWAY_DB; the master key comes from
GATEWAY_MASTER_KEY_FILE (a 0600 file) or GATEWAY_MASTER_KEY. docs/gateway.md walks through it.

    gateway-admin master-key new /etc/gateway/master.key
    gateway-admin --previous-master-key-file old.key vault rewrap      # master-key rotation
    gateway-admin migrate
    gateway-admin hospital add H001 --name "City Hospital" --mode direct --txn-limit 50000.00
    gateway-admin hospital his-signature H001 --his-public-key HEX --require
    gateway-admin merchant set H001 wechat --merchant-id 1900000109 --credentials wechat.json
    gateway-admin merchant rotate H001 wechat --credentials wechat-new.json
    gateway-admin provider set alipay --merchant-id 2021004100000001 --credentials our-alipay-app.json
    gateway-admin merchant set H002 alipay --merchant-id 2088102146225135 --app-auth-token @token.txt   # service_provider mode
    gateway-admin alipay authorize H002 --app-auth-code @code.txt          # service_provider mode: the code -> app_auth_token
    gateway-admin alipay show H002                                           # who authorised, expiry, status (no token)
    gateway-admin alipay refresh H002                                        # now (the gateway's jobs refresh before expiry)
    gateway-admin provider set wechat --merchant-id 1900000100 --credentials sp-wechat.json       # our WeChat sp_mchid and keys
    gateway-admin merchant set H002 wechat --merchant-id 1900000109                                # its sub_mch_id (service_provider mode)
    gateway-admin hospital set H003 --mode service_provider
    gateway-admin his-keys set H001 keys.json
    gateway-admin devices import H001 devices.csv
    gateway-admin terminals import H001 terminals.csv
    gateway-admin device bind POS-0001 T0001
    gateway-admin device disable POS-0001 --reason "stolen from the hall, police report 123"
    gateway-admin device show POS-0001
    gateway-admin audit
    gateway-admin ledger export --hospital H001 --day 2026-11-22 --out platform-20261122.csv
    gateway-admin alarms list [--hospital H001] [--all]
    gateway-admin alarms resolve 7 --note "refund done by hand on the merchant platform"
    gateway-admin bills fetch --hospital H001 --day 2026-12-01 --out /var/lib/gateway/bills
    gateway-admin jobs list [--hospital H001]
    gateway-admin wechat certificates refresh H001 [--expect-serial SERIAL]   # APIv3 platform certificates (first use: pin one)
    gateway-admin wechat certificates show H001      (or --provider: our sp_mchid's, for service_provider hospitals)
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from local_storage.atomic_file import atomic_text_writer
from protocol.amount import DEFAULT_LIMIT_FEN, format_yuan, parse_yuan
from protocol.limits import format_limits
from protocol.errors import ProtocolError
from protocol.keyfile import KeyFileError, parse_keyfile
from protocol.messages import PayChannel

from gateway.alarms import Alarms
from gateway.db import Database, open_database
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import BUSINESS_TZ
from gateway.ledger_export import write_export
from gateway.migrations import LATEST
from gateway.tenancy import Device, Directory, Mode
from gateway.vault import read_master_key_file, vault_from_env, write_master_key_file

if TYPE_CHECKING:  # imported where used: the channel clients pull in requests, which most commands never need
    from gateway.alipay_authorizations import AlipayAuthorizations, Authorization

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
ENV_DB = "GATEWAY_DB"


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise GatewayError(GatewayCode.BAD_INPUT, f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _fen(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        fen = parse_yuan(text, allow_zero=False)
    except ProtocolError as exc:
        raise GatewayError(GatewayCode.BAD_INPUT, f"{what}: {exc.message}") from None
    return fen


def _channel(text: str) -> PayChannel:
    try:
        return PayChannel(text.upper())
    except ValueError:
        raise GatewayError(GatewayCode.BAD_INPUT, f"channel {text!r} must be wechat or alipay") from None


def _when(ts: int | None) -> str:
    if ts is None:
        return "never"
    return datetime.datetime.fromtimestamp(ts, BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S %Z")


def _database(args: argparse.Namespace) -> Database:
    url = args.db or os.environ.get(ENV_DB)
    if not url:
        raise GatewayError(GatewayCode.BAD_DATABASE_URL, f"say which database: --db sqlite:/path/gateway.db or postgresql://..., or set {ENV_DB}")
    return open_database(url)


def _directory(args: argparse.Namespace) -> Directory:
    db = _database(args)
    if db.schema_version() < LATEST:
        raise GatewayError(GatewayCode.BAD_CONFIG, f"the database schema is not up to date; run: gateway-admin --db {db.url} migrate")
    vault = vault_from_env(key_file=Path(args.master_key_file) if args.master_key_file else None,
                           previous_key_file=Path(args.previous_master_key_file) if args.previous_master_key_file else None)
    return Directory(db, vault)


def _show_device(d: Device) -> None:
    _out(f"device {d.device_id}  hospital {d.hospital_id}  terminals {', '.join(d.terminal_ids) or '(unbound)'}  {d.status.value}"
         + (f" ({d.disabled_reason})" if d.disabled_reason else ""))
    _out(f"  model {d.model}  serial {d.serial_no}  public key {d.public_key.hex()[:16]}...")
    _out(f"  last contact {_when(d.last_seen_at)}  firmware {d.firmware_version or 'unknown'}")


# --- commands -----------------------------------------------------------------------------------


def cmd_master_key_new(args: argparse.Namespace) -> int:
    path = Path(args.path)
    write_master_key_file(path)
    read_master_key_file(path)
    _out(f"wrote a new master key to {path} (mode 600); back it up apart from the database: without it the credentials cannot be opened")
    return EXIT_OK


def cmd_vault_rewrap(args: argparse.Namespace) -> int:
    d = _directory(args)
    counts = d.rewrap_vault(actor=args.actor)
    _out(f"sealed again under master key {d.vault.key_id.hex()}: {counts['merchant_keys']} merchant credential(s), "
         f"{counts['his_keys']} HIS key(s), {counts['provider_keys']} provider credential(s), "
         f"{counts['wechat_platform_certs']} WeChat Pay platform certificate(s); once every gateway runs with this key alone, drop the previous one "
         "(keep it as long as backups made before today are kept)")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    db = _database(args)
    try:
        _out(f"schema version {db.migrate()}")
    finally:
        db.close()
    return EXIT_OK


def _his_key(text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise GatewayError(GatewayCode.BAD_INPUT, "--his-public-key must be the hex of the 32-byte Ed25519 key") from None


def cmd_hospital_add(args: argparse.Namespace) -> int:
    d = _directory(args)
    his_key = _his_key(args.his_public_key)
    h = d.add_hospital(
        args.hospital_id, args.name, mode=Mode(args.mode), actor=args.actor,
        txn_limit_fen=_fen(args.txn_limit, "--txn-limit") or DEFAULT_LIMIT_FEN,
        daily_limit_fen=_fen(args.daily_limit, "--daily-limit"),
        terminal_daily_limit_fen=_fen(args.terminal_daily_limit, "--terminal-daily-limit"),
        require_his_signature=args.require_his_signature, his_public_key=his_key,
    )
    _out(f"added hospital {h.hospital_id} ({h.mode.value}), per-payment limit {format_yuan(h.txn_limit_fen)}")
    return EXIT_OK


def cmd_hospital_his_signature(args: argparse.Namespace) -> int:
    h = _directory(args).set_his_signature(args.hospital_id, required=args.require, his_public_key=_his_key(args.his_public_key),
                                           actor=args.actor)
    _out(f"hospital {h.hospital_id}: his_sig {'required' if h.require_his_signature else 'optional (checked when present)'}"
         f", HIS public key {h.his_public_key.hex()[:16] + '...' if h.his_public_key else 'none'}")
    return EXIT_OK


def cmd_hospital_list(args: argparse.Namespace) -> int:
    d = _directory(args)
    for h in d.hospitals():
        daily = format_yuan(h.daily_limit_fen) if h.daily_limit_fen else "none"
        _out(f"{h.hospital_id}  {h.name}  {h.mode.value}  per-payment {format_yuan(h.txn_limit_fen)}  daily {daily}"
             f"  his_sig {'required' if h.require_his_signature else 'optional'}")
    return EXIT_OK


def cmd_hospital_limits(args: argparse.Namespace) -> int:
    """The hospital's per-transaction limit as the hospital-limits-v1 document (protocol.limits): the
    one source the bridge (`[security] limits_file`) and the POS (`pos-flash provision config --limits`)
    are provisioned from."""
    limits = _directory(args).limits(args.hospital_id)
    text = format_limits(limits)
    if args.out in (None, "-"):
        sys.stdout.write(text)
    else:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise GatewayError(GatewayCode.BAD_INPUT, f"cannot write {args.out}: {exc.strerror or exc}") from None
        _out(f"wrote {args.out}: hospital {limits.hospital_id}, per-payment limit {format_yuan(limits.per_transaction_fen)}; provision the bridge "
             f"([security] limits_file) and each POS (pos-flash provision config --limits) with it")
    return EXIT_OK


def _credentials(path: str) -> dict[str, str]:
    try:
        obj = json.loads(_read(path, "credentials file"))
    except ValueError as exc:
        raise GatewayError(GatewayCode.BAD_INPUT, f"{path} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise GatewayError(GatewayCode.BAD_INPUT, f"{path} must hold a JSON object of strings")
    return obj


def cmd_merchant_set(args: argparse.Namespace) -> int:
    d = _directory(args)
    channel = _channel(args.channel)
    if args.rotate:
        merchant_id = args.merchant_id or d.merchant_id(args.hospital_id, channel)
    else:
        if not args.merchant_id:
            raise GatewayError(GatewayCode.BAD_INPUT, "--merchant-id is required (WeChat mch_id or sub_mch_id, Alipay app_id)")
        merchant_id = args.merchant_id
    sub_merchant = channel is PayChannel.WECHAT and d.hospital(args.hospital_id).mode is Mode.SERVICE_PROVIDER
    if args.credentials is not None and args.app_auth_token is not None or (
            args.credentials is None and args.app_auth_token is None and not sub_merchant):
        raise GatewayError(GatewayCode.BAD_INPUT, "give --credentials FILE, or (Alipay, a hospital in service_provider mode) --app-auth-token")
    if args.credentials is None and args.app_auth_token is None:
        secrets: dict[str, str] = {}  # a WeChat Pay sub-merchant: its sub_mch_id is all (our provider keys sign)
    elif args.app_auth_token is not None:
        if channel is not PayChannel.ALIPAY:
            raise GatewayError(GatewayCode.BAD_INPUT, "--app-auth-token is Alipay's (third-party application mode)")
        secrets = {"app_auth_token": _app_auth_token(args.app_auth_token)}
    else:
        secrets = _credentials(args.credentials)
    version = d.set_merchant_key(args.hospital_id, channel, merchant_id, secrets, actor=args.actor)
    _out(f"{args.hospital_id} {channel.value} merchant {merchant_id}: credentials version {version} is current"
         + (f"; version {version - 1} retired" if version > 1 else ""))
    return EXIT_OK


def _app_auth_token(value: str) -> str:
    """The token as Alipay issued it, or `@FILE` to read it from a file (kept out of the shell history)."""
    token = _read(value[1:], "app_auth_token file").strip() if value.startswith("@") else value
    if not token or len(token) > 128 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in token):
        raise GatewayError(GatewayCode.BAD_INPUT, "the app_auth_token must be 1-128 letters, digits, '.', '_' or '-' as Alipay issued it")
    return token


def _app_auth_code(value: str) -> str:
    """The app_auth_code as given, from `@FILE`, or from standard input with `-` (typed without echo on a
    terminal): never echoed, logged or stored."""
    if value == "-":
        text = getpass.getpass("app_auth_code: ") if sys.stdin.isatty() else sys.stdin.readline()
    elif value.startswith("@"):
        text = _read(value[1:], "app_auth_code file")
    else:
        text = value
    return text.strip()


def _alipay_authorizations(args: argparse.Namespace) -> "AlipayAuthorizations":
    from gateway.alipay_authorizations import AlipayAuthorizations
    from gateway.channel_clients import ChannelFactory

    directory = _directory(args)
    return AlipayAuthorizations(directory, ChannelFactory(directory))


def _show_authorization(auth: "Authorization") -> None:
    _out(f"{auth.hospital_id}: Alipay merchant {auth.user_id} (its app {auth.auth_app_id}) authorised our third-party application "
         f"{auth.app_id}; credentials version {auth.key_version}; {'valid' if auth.status == 'valid' else 'MUST AUTHORISE AGAIN'}")
    _out(f"  token ends {_when(auth.token_expires_at)}, refresh token ends {_when(auth.refresh_expires_at)}; "
         f"authorised {_when(auth.authorized_at)}, last refreshed {_when(auth.refreshed_at)}")
    if auth.status == "valid":
        _out(f"  the gateway's jobs refresh it from {_when(auth.refresh_due_at())} (or now: gateway-admin alipay refresh {auth.hospital_id})")
    elif auth.last_error:
        _out(f"  Alipay said: {auth.last_error}")


def cmd_alipay_authorize(args: argparse.Namespace) -> int:
    auths = _alipay_authorizations(args)
    try:
        auth = auths.authorize(args.hospital_id, _app_auth_code(args.app_auth_code), actor=args.actor, merchant_id=args.merchant_id)
    finally:
        auths.directory.db.close()
    _show_authorization(auth)
    return EXIT_OK


def cmd_alipay_show(args: argparse.Namespace) -> int:
    auths = _alipay_authorizations(args)
    try:
        auth = auths.get(args.hospital_id)
        _show_authorization(auth)
        current = auths.directory.merchant_key_version(args.hospital_id, PayChannel.ALIPAY)[1]
        if current != auth.key_version:
            _out(f"  but the hospital's Alipay credentials are now version {current}, set by hand (merchant set/rotate): they are not "
                 f"refreshed; gateway-admin alipay authorize {args.hospital_id} --app-auth-code ... puts an authorisation back")
        if not args.offline:
            info = auths.query(args.hospital_id)
            _out(f"  Alipay (alipay.open.auth.token.app.query): status {info.status}, merchant {info.user_id}, app {info.auth_app_id}, "
                 f"from {info.auth_start or '?'} to {info.auth_end or '?'}")
            if info.auth_methods:
                _out(f"  methods: {', '.join(info.auth_methods)}")
    finally:
        auths.directory.db.close()
    return EXIT_OK


def cmd_alipay_refresh(args: argparse.Namespace) -> int:
    auths = _alipay_authorizations(args)
    try:
        auth = auths.refresh(args.hospital_id, actor=args.actor)
    finally:
        auths.directory.db.close()
    _show_authorization(auth)
    return EXIT_OK


def cmd_hospital_set(args: argparse.Namespace) -> int:
    h = _directory(args).set_mode(args.hospital_id, Mode(args.mode), actor=args.actor)
    _out(f"hospital {h.hospital_id} is in {h.mode.value} mode; set its channel credentials for this mode (gateway-admin merchant set)")
    return EXIT_OK


def cmd_provider_set(args: argparse.Namespace) -> int:
    d = _directory(args)
    channel = _channel(args.channel)
    version = d.set_provider_key(channel, args.merchant_id, _credentials(args.credentials), actor=args.actor)
    _out(f"service provider {channel.value} {args.merchant_id}: credentials version {version} is current"
         + (f"; version {version - 1} retired" if version > 1 else ""))
    return EXIT_OK


def cmd_his_keys_set(args: argparse.Namespace) -> int:
    d = _directory(args)
    try:
        ring = parse_keyfile(_read(args.keyfile, "HIS key file"), args.keyfile)
    except KeyFileError as exc:
        raise GatewayError(GatewayCode.BAD_INPUT, str(exc)) from None
    kids = d.add_his_keys(args.hospital_id, ring, actor=args.actor)
    _out(f"{args.hospital_id}: HIS keys {', '.join(kids)} stored (sealed under the master key)")
    return EXIT_OK


def cmd_devices_import(args: argparse.Namespace) -> int:
    d = _directory(args)
    n = d.import_devices(args.hospital_id, _read(args.csv, "device CSV"), actor=args.actor, source=args.csv)
    _out(f"{args.hospital_id}: {n} device(s) imported")
    return EXIT_OK


def cmd_terminals_import(args: argparse.Namespace) -> int:
    d = _directory(args)
    n = d.import_terminals(args.hospital_id, _read(args.csv, "terminal CSV"), actor=args.actor, source=args.csv)
    _out(f"{args.hospital_id}: {n} terminal(s) imported")
    return EXIT_OK


def cmd_device_bind(args: argparse.Namespace) -> int:
    _show_device(_directory(args).bind_device(args.device_id, args.terminal_id, actor=args.actor))
    return EXIT_OK


def cmd_device_unbind(args: argparse.Namespace) -> int:
    _show_device(_directory(args).unbind_device(args.device_id, args.terminal_id, actor=args.actor))
    return EXIT_OK


def cmd_device_disable(args: argparse.Namespace) -> int:
    _show_device(_directory(args).disable_device(args.device_id, reason=args.reason, actor=args.actor))
    _out("refused from its next request on")
    return EXIT_OK


def cmd_device_enable(args: argparse.Namespace) -> int:
    _show_device(_directory(args).enable_device(args.device_id, actor=args.actor))
    return EXIT_OK


def cmd_device_show(args: argparse.Namespace) -> int:
    _show_device(_directory(args).device(args.device_id))
    return EXIT_OK


def cmd_devices_list(args: argparse.Namespace) -> int:
    for device in _directory(args).devices(args.hospital):
        _show_device(device)
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    for at, actor, action, subject, detail in _directory(args).audit_log(limit=args.limit):
        _out(f"{_when(at)}  {actor}  {action}  {subject}  {json.dumps(detail, ensure_ascii=False, sort_keys=True)}")
    return EXIT_OK


def cmd_ledger_export(args: argparse.Namespace) -> int:
    """The day's platform ledger for reconciliation (gateway.ledger_export); read-only."""
    try:
        day = datetime.date.fromisoformat(args.day)
    except ValueError:
        raise GatewayError(GatewayCode.BAD_INPUT, f"--day {args.day!r} is not a date: use YYYY-MM-DD") from None
    db = _database(args)
    try:
        if args.out in (None, "-"):
            n = write_export(db, args.hospital, day, sys.stdout)
        else:
            out = Path(args.out)
            try:
                with atomic_text_writer(out) as f:  # a reader never sees half a day
                    n = write_export(db, args.hospital, day, f)
            except OSError as exc:
                raise GatewayError(GatewayCode.BAD_INPUT, f"cannot write {out}: {exc.strerror or exc}") from None
            sys.stderr.write(f"{n} row(s) of {args.hospital} on {day} written to {out}\n")
    finally:
        db.close()
    return EXIT_OK


def _alarms(args: argparse.Namespace) -> Alarms:
    db = _database(args)
    if db.schema_version() < LATEST:
        raise GatewayError(GatewayCode.BAD_CONFIG, f"the database schema is not up to date; run: gateway-admin --db {db.url} migrate")
    return Alarms(db)


def cmd_alarms_list(args: argparse.Namespace) -> int:
    alarms = _alarms(args).list(hospital_id=args.hospital, include_resolved=args.all)
    if not alarms:
        _out("no open alarms" if not args.all else "no alarms")
    for a in alarms:
        what = f"{a.kind.value} {a.order_no or ''} {format_yuan(a.amount_fen) if a.amount_fen else ''}".strip()
        _out(f"#{a.alarm_id}  {a.reason}  hospital {a.hospital_id}  {what}  {a.channel or ''} {a.reference}"
             f"  since {_when(a.raised_at)}" + (f"  (x{a.count}, last {_when(a.last_at)})" if a.count > 1 else ""))
        if a.device_id:
            _out(f"  device {a.device_id}")
        if a.message:
            _out(f"  channel said: {a.message}")
        if a.resolved_at is not None:
            _out(f"  resolved {_when(a.resolved_at)} by {a.resolved_by}: {a.resolution}")
        else:
            _out(f"  what to do: {a.what_to_do}")
    return EXIT_OK


def cmd_alarms_resolve(args: argparse.Namespace) -> int:
    alarm = _alarms(args).resolve(args.alarm_id, actor=args.actor, note=args.note)
    _out(f"alarm #{alarm.alarm_id} ({alarm.reason}, {alarm.reference}) resolved by {alarm.resolved_by}")
    return EXIT_OK


def _day(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise GatewayError(GatewayCode.BAD_INPUT, f"--day {text!r} must be a date, YYYY-MM-DD") from None


def cmd_bills_fetch(args: argparse.Namespace) -> int:
    from gateway.bills import BillFetcher
    from gateway.channel_clients import ChannelFactory

    day = _day(args.day)
    if day >= datetime.datetime.now(BUSINESS_TZ).date():
        raise GatewayError(GatewayCode.BAD_INPUT, f"the bills of {day} exist from the next morning on (T+1); give a past day")
    directory = _directory(args)
    try:
        saved = BillFetcher(ChannelFactory(directory), directory, Path(args.out)).fetch(args.hospital, day)
        if not saved:
            _out(f"{args.hospital} has no channel credentials: no bills")
        for channel, path in saved.items():
            _out(f"{channel.value}: {path if path else 'no bill (no transactions that day)'}")
        _out(f"reconcile reads them with: reconcile run --date {day} --bills-dir {Path(args.out) / args.hospital} ...")
    finally:
        directory.db.close()
    return EXIT_OK


def cmd_wechat_certificates(args: argparse.Namespace) -> int:
    import time

    from gateway.channel_clients import ChannelFactory
    from gateway.channels import wechat_v3_codec as v3
    from gateway.wechat_certificates import DatabaseCertificateStore, describe

    if (args.hospital is None) == (not args.provider):
        raise GatewayError(GatewayCode.BAD_INPUT, "name a hospital, or --provider for our own service-provider merchant")
    directory = _directory(args)
    try:
        factory = ChannelFactory(directory)
        client = factory.wechat_v3_client(args.hospital)
        store = DatabaseCertificateStore(directory.db, directory.vault, client.config.mchid, actor=args.actor)
        if args.action == "refresh":
            client = type(client)(client.config, certificates=store)  # the operator's name in the audit
            try:
                listed = client.refresh_certificates(expect_serial=args.expect_serial)
            except v3.WeChatV3Error as exc:
                code = {"wechat_v3_certificates_unverified": GatewayCode.BAD_SIGNATURE,  # a person checks the serial
                        "wechat_v3_resource": GatewayCode.BAD_CONFIG}.get(exc.code, GatewayCode.CHANNEL_UNAVAILABLE)  # the APIv3 key
                raise GatewayError(code, f"{exc.code}: {exc}") from None
            _out(f"downloaded {len(listed)} platform certificate(s): {', '.join(c.serial_no for c in listed)}")
        for line in describe(store, time.time()):
            _out(line)
    finally:
        directory.db.close()
    return EXIT_OK


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from gateway.jobs import JobQueue

    db = _database(args)
    try:
        if db.schema_version() < LATEST:
            raise GatewayError(GatewayCode.BAD_CONFIG, f"the database schema is not up to date; run: gateway-admin --db {db.url} migrate")
        jobs = JobQueue(db, owner="gateway-admin").pending(hospital_id=args.hospital)
    finally:
        db.close()
    if not jobs:
        _out("no jobs: nothing is owed to the channels")
    for j in jobs:
        held = f"  held by {j.lease_owner} until {_when(j.lease_until_ms // 1000)}" if j.lease_owner and j.lease_until_ms else ""
        _out(f"#{j.job_id}  {j.kind.value}  hospital {j.hospital_id}  {j.subject}  due {_when(j.due_at_ms // 1000)}  "
             f"since {_when(j.created_at_ms // 1000)}  tries {j.attempts}{held}")
        if j.last_error:
            _out(f"  last error: {j.last_error}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway-admin", description="Onboard hospitals and manage the device fleet of the payment gateway.")
    p.add_argument("--db", help=f"sqlite:PATH or postgresql://... (default: ${ENV_DB})")
    p.add_argument("--master-key-file", help="the 0600 master key file (default: $GATEWAY_MASTER_KEY_FILE or $GATEWAY_MASTER_KEY)")
    p.add_argument("--previous-master-key-file",
                   help="during a master-key rotation, the key being replaced (default: $GATEWAY_PREVIOUS_MASTER_KEY_FILE)")
    p.add_argument("--actor", default=getpass.getuser(), help="who is doing this, for the audit trail (default: your login name)")
    sub = p.add_subparsers(dest="command", required=True)

    mk = sub.add_parser("master-key", help="the master key that seals credentials at rest").add_subparsers(dest="sub", required=True)
    s = mk.add_parser("new", help="write a fresh master key to a new 0600 file")
    s.add_argument("path")
    s.set_defaults(func=cmd_master_key_new)

    vault = sub.add_parser("vault", help="the sealed values").add_subparsers(dest="sub", required=True)
    s = vault.add_parser("rewrap", help="seal every credential and HIS key again under the current master key "
                                        "(rotation: give the previous key with --previous-master-key-file)")
    s.set_defaults(func=cmd_vault_rewrap)

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(func=cmd_migrate)

    hosp = sub.add_parser("hospital", help="hospitals (tenants)").add_subparsers(dest="sub", required=True)
    s = hosp.add_parser("add", help="onboard a hospital")
    s.add_argument("hospital_id")
    s.add_argument("--name", required=True)
    s.add_argument("--mode", choices=[m.value for m in Mode], required=True, help="direct merchant, or sub-merchant of our service-provider account")
    s.add_argument("--txn-limit", help="per-payment limit in yuan, e.g. 50000.00 (default)")
    s.add_argument("--daily-limit", help="the hospital's daily collection limit in yuan (Asia/Shanghai day)")
    s.add_argument("--terminal-daily-limit", help="each terminal's daily collection limit in yuan")
    s.add_argument("--require-his-signature", action="store_true", help="refunds must carry HIS's Ed25519 his_sig")
    s.add_argument("--his-public-key", help="hex of HIS's Ed25519 public key")
    s.set_defaults(func=cmd_hospital_add)
    s = hosp.add_parser("his-signature", help="HIS's Ed25519 key and whether refunds must carry its his_sig (HIS interface 1.1 B)")
    s.add_argument("hospital_id")
    s.add_argument("--his-public-key", help="hex of HIS's Ed25519 public key (default: keep the registered one)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--require", dest="require", action="store_true", help="refuse every refund whose instruction HIS did not sign")
    g.add_argument("--optional", dest="require", action="store_false", help="check his_sig only when present")
    s.set_defaults(func=cmd_hospital_his_signature)
    s = hosp.add_parser("set", help="change a hospital's mode (its own merchant accounts, or a sub-merchant of our service provider)")
    s.add_argument("hospital_id")
    s.add_argument("--mode", choices=[m.value for m in Mode], required=True)
    s.set_defaults(func=cmd_hospital_set)
    s = hosp.add_parser("list", help="list hospitals")
    s.set_defaults(func=cmd_hospital_list)
    s = hosp.add_parser("limits", help="the per-payment limit as a hospital-limits-v1 file, to provision the bridge and the POS from")
    s.add_argument("hospital_id")
    s.add_argument("--out", help="write the file here (default: standard output)")
    s.set_defaults(func=cmd_hospital_limits)

    merch = sub.add_parser("merchant", help="a hospital's channel credentials").add_subparsers(dest="sub", required=True)
    for name, rotate in (("set", False), ("rotate", True)):
        s = merch.add_parser(name, help="store the credentials" if not rotate else "replace the current credentials with new ones")
        s.add_argument("hospital_id")
        s.add_argument("channel", help="wechat or alipay")
        s.add_argument("--merchant-id", help="WeChat mch_id / sub_mch_id, Alipay app_id" + (" (default: unchanged)" if rotate else ""))
        s.add_argument("--credentials", help="JSON object of the channel's secrets (read, sealed, never printed); a WeChat Pay "
                                             "sub-merchant (service_provider mode) needs none, or {\"sub_appid\": ...}")
        s.add_argument("--app-auth-token", metavar="TOKEN|@FILE", help="Alipay, hospital in service_provider mode: the app_auth_token "
                       "the hospital granted our third-party application (sealed like the credentials; --merchant-id: its 2088... user_id)")
        s.set_defaults(func=cmd_merchant_set, rotate=rotate)

    prov = sub.add_parser("provider", help="our own service-provider credentials").add_subparsers(dest="sub", required=True)
    s = prov.add_parser("set", help="store (or rotate) the provider's channel credentials, used by every service_provider hospital")
    s.add_argument("channel", help="alipay (the third-party application) or wechat (our service-provider merchant account)")
    s.add_argument("--merchant-id", required=True, help="Alipay: the third-party application's app_id; WeChat Pay: our sp mch_id")
    s.add_argument("--credentials", required=True, help="JSON object: the app's settings and keys (read, sealed, never printed)")
    s.set_defaults(func=cmd_provider_set)

    ali = sub.add_parser("alipay", help="a hospital's authorisation of our Alipay third-party application (service_provider mode)")
    ali_sub = ali.add_subparsers(dest="sub", required=True)
    s = ali_sub.add_parser("authorize", help="exchange the app_auth_code the hospital's authorisation gave us for its app_auth_token "
                                             "(alipay.open.auth.token.app); stored sealed, refreshed by the gateway before it ends")
    s.add_argument("hospital_id")
    s.add_argument("--app-auth-code", required=True, metavar="CODE|@FILE|-",
                   help="the code, @FILE to read it from a file, or - for standard input (typed without echo); never printed")
    s.add_argument("--merchant-id", help="the 2088... merchant the code must come from (default: the hospital's Alipay merchant on file)")
    s.set_defaults(func=cmd_alipay_authorize)
    s = ali_sub.add_parser("show", help="who authorised, when the token ends, and what Alipay says it covers (no token shown)")
    s.add_argument("hospital_id")
    s.add_argument("--offline", action="store_true", help="only what the gateway stored; do not ask Alipay")
    s.set_defaults(func=cmd_alipay_show)
    s = ali_sub.add_parser("refresh", help="refresh the hospital's app_auth_token now (the gateway's jobs do it before it ends)")
    s.add_argument("hospital_id")
    s.set_defaults(func=cmd_alipay_refresh)

    his = sub.add_parser("his-keys", help="a hospital's HIS envelope keys").add_subparsers(dest="sub", required=True)
    s = his.add_parser("set", help="store the keys of a his-keys-v1 file")
    s.add_argument("hospital_id")
    s.add_argument("keyfile")
    s.set_defaults(func=cmd_his_keys_set)

    devs = sub.add_parser("devices", help="the device registry").add_subparsers(dest="sub", required=True)
    s = devs.add_parser("import", help="import device records (device_id,model,serial_no,public_key)")
    s.add_argument("hospital_id")
    s.add_argument("csv")
    s.set_defaults(func=cmd_devices_import)
    s = devs.add_parser("list", help="list devices")
    s.add_argument("--hospital")
    s.set_defaults(func=cmd_devices_list)

    terms = sub.add_parser("terminals", help="the HIS terminal list (step 2)").add_subparsers(dest="sub", required=True)
    s = terms.add_parser("import", help="import terminal_id,description[,device_id]")
    s.add_argument("hospital_id")
    s.add_argument("csv")
    s.set_defaults(func=cmd_terminals_import)

    dev = sub.add_parser("device", help="one device").add_subparsers(dest="sub", required=True)
    s = dev.add_parser("bind", help="the device serves this terminal of its hospital too (a device may serve several)")
    s.add_argument("device_id")
    s.add_argument("terminal_id")
    s.set_defaults(func=cmd_device_bind)
    s = dev.add_parser("unbind", help="the device no longer serves this terminal (its other terminals stay)")
    s.add_argument("device_id")
    s.add_argument("terminal_id")
    s.set_defaults(func=cmd_device_unbind)
    s = dev.add_parser("disable", help="refuse every request of a device (stolen, lost, retired)")
    s.add_argument("device_id")
    s.add_argument("--reason", required=True)
    s.set_defaults(func=cmd_device_disable)
    s = dev.add_parser("enable", help="accept a disabled device again (bind it to a terminal afterwards)")
    s.add_argument("device_id")
    s.set_defaults(func=cmd_device_enable)
    s = dev.add_parser("show", help="status, binding, last contact and firmware version")
    s.add_argument("device_id")
    s.set_defaults(func=cmd_device_show)

    alarms = sub.add_parser("alarms", help="what needs a person (payments and refunds in doubt, merchant settings)")
    alarm_sub = alarms.add_subparsers(dest="sub", required=True)
    s = alarm_sub.add_parser("list", help="open alarms, oldest first, each with what to do")
    s.add_argument("--hospital")
    s.add_argument("--all", action="store_true", help="resolved ones too")
    s.set_defaults(func=cmd_alarms_list)
    s = alarm_sub.add_parser("resolve", help="close an alarm, saying what was done (audited)")
    s.add_argument("alarm_id", type=int)
    s.add_argument("--note", required=True)
    s.set_defaults(func=cmd_alarms_resolve)

    s = sub.add_parser("audit", help="the latest audited actions")
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_audit)

    bills = sub.add_parser("bills", help="the channels' T+1 bills").add_subparsers(dest="sub", required=True)
    s = bills.add_parser("fetch", help="download a hospital's WeChat Pay and Alipay bills of a day into OUT/HOSPITAL, for reconcile")
    s.add_argument("--hospital", required=True, help="the hospital id")
    s.add_argument("--day", required=True, help="the business day (Asia/Shanghai), YYYY-MM-DD")
    s.add_argument("--out", default="bills", help="the bills directory (default: ./bills); files go to OUT/HOSPITAL")
    s.set_defaults(func=cmd_bills_fetch)

    wechat = sub.add_parser("wechat", help="WeChat Pay specifics").add_subparsers(dest="sub", required=True)
    certs = wechat.add_parser("certificates", help="APIv3 platform certificates (GET /v3/certificates)")
    certs.add_argument("action", choices=["refresh", "show"], help="refresh: download the list now; show: what is held")
    certs.add_argument("hospital", nargs="?", help="the hospital (in service_provider mode: our provider's certificates)")
    certs.add_argument("--provider", action="store_true", help="our own service-provider merchant's certificates")
    certs.add_argument("--expect-serial", help="refresh: believe a list signed by this certificate (checked out of band on the "
                                               "merchant platform): the first one, or one after a missed rotation")
    certs.set_defaults(func=cmd_wechat_certificates)

    jobs = sub.add_parser("jobs", help="the channel work the gateway owes").add_subparsers(dest="sub", required=True)
    s = jobs.add_parser("list", help="collections and refunds still to finish, bills to fetch: due, tries, holder, last error")
    s.add_argument("--hospital")
    s.set_defaults(func=cmd_jobs_list)

    led = sub.add_parser("ledger", help="the ledger, read-only").add_subparsers(dest="sub", required=True)
    s = led.add_parser("export", help="a hospital's day of payments and refunds for reconciliation (the platform leg)")
    s.add_argument("--hospital", required=True, help="the hospital id")
    s.add_argument("--day", required=True, help="the business day (Asia/Shanghai), YYYY-MM-DD")
    s.add_argument("--out", help="the file to write (default: standard output)")
    s.set_defaults(func=cmd_ledger_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GatewayError as exc:
        sys.stderr.write(f"gateway-admin: {exc}\n")
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
