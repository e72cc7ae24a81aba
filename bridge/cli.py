"""`his-bridge`: run the bridge and administer its keys and registries (thin over bridge.* functions).

Only `main` turns errors into exit codes: 0 success, 1 a problem the message explains, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from protocol.crypto import SUITES
from protocol.errors import CodedError
from protocol.registry import format_device_csv

from bridge import keystore, registries
from bridge.config import BridgeConfigError, load_config
from bridge.initdir import init_directory
from bridge.keystore import IDENTITY_FILE, IDENTITY_PUBLIC_FILE, load_identity, new_identity
from bridge.journal import Journal, JournalError
from bridge.transport import TransportError, list_serial_ports, list_usb_devices

DEFAULT_CONFIG = os.environ.get("HIS_BRIDGE_CONFIG", "config.toml")


class CliError(CodedError):
    code = "bridge_cli"


def _config(args: argparse.Namespace):
    return load_config(args.config)


def cmd_serve(args: argparse.Namespace) -> int:
    from bridge.daemon import serve

    return serve(args.config)


def cmd_init(args: argparse.Namespace) -> int:
    files, key = init_directory(Path(args.dir), kid=args.kid, suite=args.suite)
    for path in files:
        print(f"wrote {path}")
    print(f"key {key.kid} ({key.suite}) fingerprint {key.fingerprint}")
    identity = load_identity(Path(args.dir) / IDENTITY_FILE)
    print(f"bridge identity fingerprint {identity.public_key().fingerprint}: pin "
          f"{Path(args.dir) / IDENTITY_PUBLIC_FILE} on every POS at provisioning (pos-sim init --host-key)")
    print("next: his-bridge devices import <records.csv>, terminals import <his.csv>, terminals bind T D")
    return 0


def cmd_identity_new(args: argparse.Namespace) -> int:
    path = _config(args).security.identity_file
    key = new_identity(path, args.name or "bridge-" + time.strftime("%Y%m%d"))
    print(f"wrote {path} (0600) and {path.with_suffix('.pub')}; fingerprint {key.public_key().fingerprint}")
    print("pin the .pub file on every POS this bridge serves (pos-sim init --host-key), or they refuse it")
    return 0


def cmd_identity_show(args: argparse.Namespace) -> int:
    path = _config(args).security.identity_file
    key = load_identity(path)
    print(f"{path}: bridge identity {key.name}, fingerprint {key.public_key().fingerprint}")
    print(f"public key (to pin): {path.with_suffix('.pub')}")
    return 0


def cmd_keys_new(args: argparse.Namespace) -> int:
    path = _config(args).security.key_file
    key = keystore.new_key(path, args.kid, args.suite)
    print(f"added {key.kid} ({key.suite}) to {path}; fingerprint {key.fingerprint}")
    if args.show:
        print(f"key_hex {key.secret.hex()}")
        print("give this key to the HIS vendor over a secure channel, then clear your screen", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    keys = keystore.list_keys(_config(args).security.key_file)
    print(f"{'kid':<20} {'suite':<12} {'fingerprint':<20} {'created':<11} state")
    for k in keys:
        print(f"{k.kid:<20} {k.suite:<12} {k.fingerprint:<20} {k.created or '-':<11} {'retired' if k.retired else 'active'}")
    return 0


def cmd_keys_retire(args: argparse.Namespace) -> int:
    key = keystore.retire_key(_config(args).security.key_file, args.kid)
    print(f"retired {key.kid} (fingerprint {key.fingerprint}); instructions sealed with it are now refused (unknown_kid)")
    return 0


def cmd_devices_import(args: argparse.Namespace) -> int:
    added, updated = registries.import_devices(_config(args).registry.devices, Path(args.file))
    print(f"devices: {added} added, {updated} updated")
    return 0


def cmd_devices_export(args: argparse.Namespace) -> int:
    n = registries.export_devices_for_his(_config(args).registry.devices, Path(args.file))
    print(f"wrote {n} devices (device_id,model,serial_no) to {args.file} for HIS")
    return 0


def cmd_devices_list(args: argparse.Namespace) -> int:
    sys.stdout.write(format_device_csv(registries.read_devices(_config(args).registry.devices), for_his=True))
    return 0


def cmd_terminals_import(args: argparse.Namespace) -> int:
    config = _config(args)
    added, updated = registries.import_terminals(config.registry.terminals, Path(args.file), config.registry.devices)
    print(f"terminals: {added} added, {updated} updated")
    return 0


def cmd_terminals_bind(args: argparse.Namespace) -> int:
    config = _config(args)
    t = registries.bind_terminal(config.registry.terminals, args.terminal, args.device, config.registry.devices)
    print(f"terminal {t.terminal_id} -> device {t.device_id} (a running bridge picks this up within a second)")
    return 0


def cmd_terminals_list(args: argparse.Namespace) -> int:
    for t in registries.read_terminals(_config(args).registry.terminals):
        print(f"{t.terminal_id:<20} {t.device_id or '(not bound)':<20} {t.description}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    import requests

    url = args.url
    if url is None:
        http = _config(args).http
        url = f"http://{http.host if ':' not in http.host else '[' + http.host + ']'}:{http.port}"
    try:
        response = requests.get(url.rstrip("/") + "/v1/health", timeout=5)
    except requests.RequestException as exc:
        raise CliError(f"no bridge answering at {url} ({type(exc).__name__}); is the service running?") from None
    print(json.dumps(response.json(), indent=2, ensure_ascii=False))
    return 0 if response.ok and response.json().get("status") == "ok" else 1


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    ring = keystore.load_keyring(config.security.key_file)
    identity = load_identity(config.security.identity_file)
    devices = registries.read_devices(config.registry.devices)
    terminals = registries.read_terminals(config.registry.terminals)
    known = {d.device_id for d in devices}
    unbound = [t.terminal_id for t in terminals if t.device_id is None]
    dangling = [t.terminal_id for t in terminals if t.device_id and t.device_id not in known]
    print(f"{config.source}: OK; listening on {config.http.host}:{config.http.port}; ports {', '.join(config.link.ports)}")
    print(f"keys: {len(ring.active())} active, {len(ring) - len(ring.active())} retired")
    print(f"link identity: {identity.name}, fingerprint {identity.public_key().fingerprint}")
    print(f"devices: {len(devices)}; terminals: {len(terminals)} ({len(unbound)} not bound)")
    if dangling:
        raise CliError(f"terminals bound to devices not in the device registry: {', '.join(dangling)}")
    return 0


def cmd_ports(args: argparse.Namespace) -> int:
    ports = list_serial_ports()
    if not ports:
        print("no serial ports found")
    for p in ports:
        print(f"{p.device:<24} {p.usb_id or '-':<10} {p.serial_number or '-':<16} {p.description}")
    try:
        devices = list_usb_devices()
    except TransportError as exc:
        print(f"USB devices: not listed ({exc})")
        return 0
    print("USB devices (an Android POS is named by its VID:PID: aoa://VID:PID, docs/android-pos.md):")
    for d in devices:
        mode = "  (Android accessory mode)" if d.accessory_mode else ""
        print(f"  bus {d.bus if d.bus is not None else '?'} address {d.address if d.address is not None else '?'}  {d.usb_id}{mode}")
    return 0


class _Sub:
    """add_parser with the common options as a parent, so they work before or after the command."""

    def __init__(self, action: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
        self.action, self.common = action, common

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        return self.action.add_parser(name, parents=[self.common], **kwargs)  # type: ignore[arg-type]  # argparse's add_parser keywords pass through unchanged


def cmd_journal_check(args: argparse.Namespace) -> int:
    from bridge.journal_admin import check

    path = _config(args).journal.path
    report, mark, rows = check(path)
    if report.ok:
        print(f"{path}: ok ({rows} instructions, high-water mark {mark})")
        return 0
    print(f"{path}: journal_integrity: {report.reason}")
    for problem in report.problems[1:20]:
        print(f"  also: {problem}")
    print("recover: stop the bridge, then `his-bridge journal restore BACKUP` with the newest backup "
          "(or `his-bridge journal restore --accept-current` if there is none; docs/bridge.md, Journal integrity)")
    return 1


def cmd_journal_backup(args: argparse.Namespace) -> int:
    from bridge.journal_admin import backup

    path = _config(args).journal.path
    mark = backup(path, Path(args.dest))
    print(f"backed up {path} to {args.dest} (high-water mark {mark})")
    return 0


def cmd_journal_restore(args: argparse.Namespace) -> int:
    from bridge.journal_admin import accept_current, restore

    path = _config(args).journal.path
    if args.accept_current == (args.backup is not None):
        raise CliError("name a BACKUP to restore, or --accept-current (not both)")
    if args.accept_current:
        mark = accept_current(path, args.mark)
        print(f"{path}: accepted as it is (high-water mark {mark}); results the POS sent after it must be re-asked")
    else:
        mark = restore(path, Path(args.backup))
        print(f"restored {path} from {args.backup} (high-water mark {mark}); the damaged files were kept beside it")
    return 0


def cmd_journal_prune(args: argparse.Namespace) -> int:
    import time

    from bridge.journal import Journal
    from bridge.retention import prune

    config = _config(args).journal
    journal = Journal(config.path, synchronous=config.synchronous)
    try:
        report = prune(journal, config.archive_dir or config.path.parent / "archive",
                       retention_days=config.retention_days, now=time.time())
    finally:
        journal.close()
    print(f"archived and removed {report.archived} finished instructions older than {config.retention_days} days"
          + (f" (months {', '.join(report.months)})" if report.months else ""))
    return 0


def _open_journal(args: argparse.Namespace) -> Journal:
    config = _config(args).journal
    if not config.path.exists():
        raise CliError(f"no journal at {config.path} (is --config the bridge's configuration?)")
    return Journal(config.path, synchronous=config.synchronous)


def cmd_journal_held_list(args: argparse.Namespace) -> int:
    """Results the bridge keeps without having accepted them (docs/bridge.md, Held results)."""
    import time

    journal = _open_journal(args)
    try:
        listing = journal.held_listing()
    finally:
        journal.close()
    if not listing:
        print("no held results")
        return 0
    print(f"{len(listing)} held result(s), oldest first:")
    for held, verified in listing:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(held.held_at))
        print(f"{held.reply_to}  result {held.result_msg_id}  device {held.device_id}  held since {when}  "
              f"{held.code}{'' if verified else ' (CHECKSUM FAILS: never accepted)'}: {held.message}")
    print("clock_skew clears by itself once the clocks agree; any other code is a security hold: look into it, then "
          "`his-bridge journal held clear MSG_ID --reason \"...\"` (audited in the journal)")
    return 0


def cmd_journal_held_clear(args: argparse.Namespace) -> int:
    """Release held results of one instruction (or one result msg_id), with a reason kept in the journal."""
    if not args.reason or not args.reason.strip():
        raise CliError("--reason is required and must not be empty: it is kept in the journal's audit trail")
    journal = _open_journal(args)
    try:
        cleared = journal.clear_held(args.msg_id, args.reason)
    finally:
        journal.close()
    if not cleared:
        raise CliError(f"no held result with msg_id or instruction msg_id {args.msg_id} (see `his-bridge journal held list`)")
    for held in cleared:
        print(f"cleared held result {held.result_msg_id} of instruction {held.reply_to} ({held.code}); "
              "the instruction stays unfinished: settle it with HIS by hand")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="his-bridge", description="The HIS bridge on the cashier PC: HTTP API for HIS, USB link to the POS.",
        epilog="Configuration reference and operations: docs/bridge.md")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"configuration file (default: $HIS_BRIDGE_CONFIG or config.toml; now {DEFAULT_CONFIG})")
    # --config is also accepted after the subcommand (his-bridge serve --config FILE).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="configuration file (as before the command)")
    sub = _Sub(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), common)

    p = sub.add_parser("serve", help="run the bridge until Ctrl-C / SIGTERM / service stop")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("init", help="create DIR with an example config, empty registries and a new key file")
    p.add_argument("dir")
    p.add_argument("--kid", help="name of the first key (default: kYYYYMM)")
    p.add_argument("--suite", choices=sorted(SUITES), default="AES-256-GCM")
    p.set_defaults(func=cmd_init)
    identity = _Sub(sub.add_parser("identity", help="the bridge's link identity key: new, show").add_subparsers(
        dest="identity_command", required=True, metavar="COMMAND"), common)
    p = identity.add_parser("new", help="make the link identity key (0600) and its .pub (never overwrites)")
    p.add_argument("--name", help="a name for the key (default: bridge-YYYYMMDD)")
    p.set_defaults(func=cmd_identity_new)
    p = identity.add_parser("show", help="the identity's fingerprint and the .pub file to pin on each POS")
    p.set_defaults(func=cmd_identity_show)
    p = sub.add_parser("check", help="validate the configuration, key file and registries, then exit")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("health", help="print GET /v1/health of the running bridge (exit 1 unless status ok)")
    p.add_argument("--url", help="bridge URL (default: from the configuration)")
    p.set_defaults(func=cmd_health)
    p = sub.add_parser("ports", help="list serial ports with their USB VID:PID, and the USB devices (to find the POS)")
    p.set_defaults(func=cmd_ports)

    keys = _Sub(sub.add_parser("keys", help="shared keys: new, list, retire").add_subparsers(
        dest="keys_command", required=True), common)
    p = keys.add_parser("new", help="add a fresh random key; prints its fingerprint (the key only with --show)")
    p.add_argument("--kid", required=True, help="key id, [A-Za-z0-9_-]{1,64}, e.g. k2026b")
    p.add_argument("--suite", required=True, choices=sorted(SUITES))
    p.add_argument("--show", action="store_true", help="also print the key (hex) to hand it to HIS once")
    p.set_defaults(func=cmd_keys_new)
    p = keys.add_parser("list", help="kid, suite, fingerprint, created, active/retired")
    p.set_defaults(func=cmd_keys_list)
    p = keys.add_parser("retire", help="stop accepting instructions sealed with KID")
    p.add_argument("kid")
    p.set_defaults(func=cmd_keys_retire)

    devices = _Sub(sub.add_parser("devices", help="device registry: import, export, list").add_subparsers(
        dest="devices_command", required=True), common)
    p = devices.add_parser("import", help="merge device records (device_id,model,serial_no,public_key)")
    p.add_argument("file")
    p.set_defaults(func=cmd_devices_import)
    p = devices.add_parser("export", help="write the device list for HIS (step 2)")
    p.add_argument("--for-his", dest="file", required=True, metavar="FILE", help="CSV device_id,model,serial_no,public_key")
    p.set_defaults(func=cmd_devices_export)
    p = devices.add_parser("list", help="print the device registry (without keys)")
    p.set_defaults(func=cmd_devices_list)

    terminals = _Sub(sub.add_parser("terminals", help="terminal registry: import, bind, list").add_subparsers(
        dest="terminals_command", required=True), common)
    p = terminals.add_parser("import", help="merge HIS's terminal list (terminal_id,description[,device_id])")
    p.add_argument("file")
    p.set_defaults(func=cmd_terminals_import)
    p = terminals.add_parser("bind", help="route TERMINAL's instructions to DEVICE")
    p.add_argument("terminal")
    p.add_argument("device")
    p.set_defaults(func=cmd_terminals_bind)
    p = terminals.add_parser("list", help="terminal, bound device, description")
    p.set_defaults(func=cmd_terminals_list)

    journal = _Sub(sub.add_parser("journal", help="journal integrity: check, backup, restore, prune, held").add_subparsers(
        dest="journal_command", required=True), common)
    p = journal.add_parser("check", help="check the journal (mark, SQLite, every row's checksum); exit 1 if damaged")
    p.set_defaults(func=cmd_journal_check)
    p = journal.add_parser("backup", help="online backup (database and WAL together) to DEST, safe while running")
    p.add_argument("dest")
    p.set_defaults(func=cmd_journal_backup)
    p = journal.add_parser("restore", help="replace a damaged journal by BACKUP (stop the bridge first); unlocks it")
    p.add_argument("backup", nargs="?")
    p.add_argument("--accept-current", action="store_true",
                   help="no backup: accept the journal as it is (its rows must verify) as the new high-water mark")
    p.add_argument("--mark", type=int, default=None,
                   help="with --accept-current, after a POS found this journal rolled back: the mark that POS holds "
                        "(named in /v1/health); the journal's mark is raised to it")
    p.set_defaults(func=cmd_journal_restore)
    p = journal.add_parser("prune", help="archive and remove finished instructions older than retention_days now")
    p.set_defaults(func=cmd_journal_prune)
    held = _Sub(journal.add_parser("held", help="results the bridge keeps without accepting them: list, clear")
                .add_subparsers(dest="held_command", required=True), common)
    p = held.add_parser("list", help="every held result: instruction, result msg_id, device, since, code, why")
    p.set_defaults(func=cmd_journal_held_list)
    p = held.add_parser("clear", help="release the held results of instruction MSG_ID (or the one result MSG_ID); audited")
    p.add_argument("msg_id", metavar="MSG_ID")
    p.add_argument("--reason", required=True, help="why (kept in the journal with the cleared result's envelope)")
    p.set_defaults(func=cmd_journal_held_clear)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (BridgeConfigError, CliError, keystore.KeyStoreError, registries.RegistryFileError, JournalError, OSError) as exc:
        print(f"his-bridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
