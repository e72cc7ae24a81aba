"""The device configuration document ("his-device-config-v1"): what a POS needs to serve HIS.

Strict JSON (duplicate keys, NaN, unknown fields are refused); every problem raises `DeviceConfigError`
naming the field, e.g. `device config: terminals[1].terminal_id 'T 1' must match [A-Za-z0-9_-]{1,64}`.
The same document is what field engineers flash as a configuration image, so it describes itself
(`format`, optional `config_version` and `comment`). Full reference: docs/terminal.md.

    {"format": "his-device-config-v1",
     "config_version": 3,                         optional, for the flashing tools
     "comment": "门诊收费 1 号窗口",                 optional, free text
     "device": {"device_id": "D-SN-000123", "model": "HIS-POS-1", "serial_no": "SN000123"},
     "merchant": {"name": "示例市人民医院", "name_en": "Example City Hospital"},
     "keys": {"format": "his-keys-v1", "keys": [...]},  or "keys_file": "keys.json" (relative path)
     "terminals": [{"terminal_id": "T0001", "description": "门诊收费1号窗口"}],
     "limits": {"per_transaction": "50000.00"},     optional, yuan
     "freshness": {"instruction_skew_s": 86400, "msg_id_memory_s": 86400},   optional
     "supervisor": {"pin_hash": "scrypt$16384$8$1$...$...", "max_wrong_tries": 5, "lockout_s": 300},
     "admin": {"pin_hash": "scrypt$..."},           optional: the settings screen's PIN
     "gateway": {"url": "https://gw.example.cn", "pinned_cert": "-----BEGIN CERTIFICATE-----..."},
                                                    the provider's gateway and the certificate (or private
                                                    CA) the POS pins; http:// only on loopback, unpinned.
                                                    The POS holds no channel secret: there is no "channels".
     "polling": {"WECHAT": {"query_interval_s": 5, "pay_deadline_s": 30}},   optional overrides
     "printer": {"command": "lp -d thermal {png}"},  optional: the receipt printer ({png} = the receipt file)
     "his_signature": {"public_keys": ["<base64>"], "require": true, "require_terminals": ["T0001"]}}
                                                    optional (his-interface 1.1 B): HIS's Ed25519 keys; with
                                                    require (hospital) / require_terminals, no his_sig = refused

`parse_config` is pure (text in, `DeviceConfig` out); `load_config` reads a file and a referenced
key file, and refuses a file holding keys that other users can read.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from protocol.amount import DEFAULT_LIMIT_FEN, format_yuan, parse_yuan
from protocol.crypto import KeyRing
from protocol.errors import CodedError, ProtocolError
from protocol.freshness import DEFAULT_ANSWER_TTL_S
from protocol.ids import is_valid_id
from protocol.keyfile import KeyFileError, format_keyfile, parse_keyfile
from protocol.messages import PayChannel
from protocol.registry import TerminalRecord
from protocol.signatures import NO_HIS_SIGNATURE, HisSignaturePolicy
from protocol.signing import decode_public_key, encode_public_key
from protocol.strictjson import loads_object
from terminal import pin as pins

FORMAT = "his-device-config-v1"
# The device remembers msg_ids this long (the spec's minimum is 24 h) ...
DEFAULT_MSG_ID_MEMORY_S = int(DEFAULT_ANSWER_TTL_S)
# ... and accepts instruction timestamps this far from its clock. The bridge already applied the
# spec's +-300 s on arrival; an instruction can reach the device much later (a cable fault, a
# queue), so the device only needs a window that keeps an old envelope from outliving the memory
# that would recognise it as a replay. See docs/terminal.md, "Clock window".
DEFAULT_INSTRUCTION_SKEW_S = DEFAULT_MSG_ID_MEMORY_S
MAX_MEMORY_S = 30 * 24 * 3600
MAX_TERMINALS = 1024
# Polling overrides are bounded so a typo cannot hammer a channel or wait for an hour.
QUERY_INTERVAL_RANGE = (0.05, 60.0)
PAY_DEADLINE_RANGE = (0.5, 600.0)
REVERSE_NOT_BEFORE_RANGE = (0.0, 60.0)

_TOP = {"format", "config_version", "comment", "device", "merchant", "keys", "keys_file", "terminals",
        "limits", "freshness", "supervisor", "admin", "gateway", "polling", "printer", "his_signature"}
# The receipt file's place in printer.command.
PNG_PLACEHOLDER = "{png}"


class DeviceConfigError(CodedError, ValueError):
    """The configuration is unusable; the message names the source and the field."""

    code = "device_config"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    model: str
    serial_no: str


@dataclass(frozen=True, slots=True)
class Polling:
    query_interval_s: float | None = None
    pay_deadline_s: float | None = None
    # The least time between a payment call and its reverse (WeChat Pay: 15 s); None: the client's.
    reverse_not_before_s: float | None = None


@dataclass(frozen=True, slots=True)
class Supervisor:
    pin_hash: pins.PinHash
    max_wrong_tries: int = pins.DEFAULT_MAX_TRIES
    lockout_s: int = pins.DEFAULT_LOCKOUT_S


@dataclass(frozen=True, slots=True)
class Printer:
    """The receipt printer: a command run without a shell, `{png}` standing for the receipt file.

    `command` is the text as configured ("lp -d thermal {png}"); `argv` is it split with shlex
    (POSIX rules: quotes group words, no variables, no pipes)."""

    command: str
    argv: tuple[str, ...]

    def args_for(self, png: str | os.PathLike[str]) -> list[str]:
        return [part.replace(PNG_PLACEHOLDER, os.fspath(png)) for part in self.argv]


def parse_print_command(command: object) -> Printer:
    """A print command as `printer.command` takes it; ValueError says what is wrong."""
    if not isinstance(command, str) or not command.strip() or len(command) > 512 or not command.isprintable():
        raise ValueError("must be a command line of 1 to 512 printable characters, such as \"lp -d thermal {png}\"")
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise ValueError(f"{command!r} cannot be split into words: {exc}") from None
    if not any(PNG_PLACEHOLDER in part for part in argv):
        raise ValueError(f"{command!r} must contain {PNG_PLACEHOLDER} where the receipt file goes, "
                         f"e.g. \"lp -d thermal {PNG_PLACEHOLDER}\"")
    if PNG_PLACEHOLDER in argv[0]:
        raise ValueError(f"{command!r} must start with the program to run, not with the receipt file")
    return Printer(command, argv)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    url: str
    pinned_cert: str | None = None  # PEM text of the certificate or private CA the POS trusts, and only it


# Certificates a POS may pin at once: the provider's CA (or the gateway's own certificate), and
# during a rotation its successor beside it, with room for an intermediate each.
MAX_PINNED_CERTS = 4


def check_pinned_certificates(pinned_cert: object) -> int:
    """How many certificates the PEM text holds; ValueError unless it is 1 to MAX_PINNED_CERTS
    well-formed X.509 certificates and nothing else. A rotation pins the old and the new one side by
    side (docs/field-engineer.md); a garbled PEM is refused here, at provisioning and at load, not
    found out at the first payment as a TLS failure."""
    from cryptography import x509  # the link's library; imported here so the config stays cheap to import

    if not isinstance(pinned_cert, str) or "-----BEGIN CERTIFICATE-----" not in pinned_cert:
        raise ValueError("pinned_cert must be the PEM text of the gateway's certificate or of the provider's CA")
    blocks = pinned_cert.count("-----BEGIN ")
    try:
        certificates = x509.load_pem_x509_certificates(pinned_cert.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("pinned_cert holds a PEM block that is not a well-formed X.509 certificate") from None
    if len(certificates) != blocks:
        raise ValueError("pinned_cert must hold certificates only (no keys or other PEM blocks)")
    if len(certificates) > MAX_PINNED_CERTS:
        raise ValueError(f"pinned_cert holds {len(certificates)} certificates; at most {MAX_PINNED_CERTS} "
                         "(the current one and its successor during a rotation)")
    return len(certificates)


def parse_gateway(url: object, pinned_cert: object) -> GatewaySettings:
    """ValueError naming what is wrong: https needs a pinned certificate, http is for loopback only."""
    if not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > 256:
        raise ValueError("url must be the gateway's https:// URL")
    host = urlsplit(url).hostname or ""
    pin: str | None = None
    if pinned_cert is not None:
        check_pinned_certificates(pinned_cert)  # refuses anything but PEM text
        pin = str(pinned_cert)
    if url.startswith("https://") and pin is None:
        raise ValueError("an https gateway needs pinned_cert: the POS trusts that certificate and no other")
    if url.startswith("http://") and host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"plain http:// is only for a gateway on this machine, not {host}; use https:// with pinned_cert")
    return GatewaySettings(url, pin)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    device: DeviceInfo
    merchant_name: str
    keys: KeyRing
    terminals: tuple[TerminalRecord, ...]
    supervisor: Supervisor
    gateway: GatewaySettings | None = None  # None: only for tests that hand the service its clients
    merchant_name_en: str | None = None
    keys_file: str | None = None  # when the document references its keys instead of embedding them
    limit_fen: int = DEFAULT_LIMIT_FEN
    instruction_skew_s: int = DEFAULT_INSTRUCTION_SKEW_S
    msg_id_memory_s: int = DEFAULT_MSG_ID_MEMORY_S
    admin_pin_hash: pins.PinHash | None = None
    polling: Mapping[PayChannel, Polling] = field(default_factory=dict)
    config_version: int = 0
    comment: str | None = None
    printer: Printer | None = None  # None: receipts are saved as images only
    his_signature: HisSignaturePolicy = NO_HIS_SIGNATURE  # his-interface 1.1 B

    def has_terminal(self, terminal_id: str) -> bool:
        return any(t.terminal_id == terminal_id for t in self.terminals)


class _Obj:
    """Typed access to one JSON object, with errors naming `where.field`."""

    def __init__(self, source: str, where: str, obj: object, allowed: set[str]) -> None:
        self.source, self.where = source, where
        if not isinstance(obj, dict):
            raise self.fail("", f"must be an object, not {_kind(obj)}")
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise self.fail("", f"has unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        self.obj: dict[str, object] = obj

    def fail(self, name: str, why: str) -> DeviceConfigError:
        path = f"{self.where}.{name}" if name and self.where else (name or self.where or "document")
        return DeviceConfigError(f"{self.source}: {path} {why}")

    def has(self, name: str) -> bool:
        return name in self.obj

    def get(self, name: str) -> object:
        if name not in self.obj:
            raise self.fail(name, "is missing")
        return self.obj[name]

    def text(self, name: str, *, max_len: int = 128, optional: bool = False) -> str | None:
        if optional and name not in self.obj:
            return None
        value = self.get(name)
        if not isinstance(value, str) or value == "" or len(value) > max_len or not value.isprintable():
            raise self.fail(name, f"must be printable text of 1 to {max_len} characters")
        return value

    def ident(self, name: str) -> str:
        value = self.get(name)
        if not is_valid_id(value):
            raise self.fail(name, f"{value!r} must match [A-Za-z0-9_-]{{1,64}}")
        assert isinstance(value, str)
        return value

    def integer(self, name: str, lo: int, hi: int, default: int) -> int:
        if name not in self.obj:
            return default
        value = self.obj[name]
        if type(value) is not int or not lo <= value <= hi:
            raise self.fail(name, f"must be a whole number from {lo} to {hi}, got {value!r}")
        return value

    def seconds(self, name: str, lo: float, hi: float) -> float | None:
        if name not in self.obj:
            return None
        value = self.obj[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise self.fail(name, f"must be a number of seconds from {lo:g} to {hi:g}, got {value!r}")
        return float(value)

    def sub(self, name: str, allowed: set[str], *, optional: bool = False) -> "_Obj | None":
        if optional and name not in self.obj:
            return None
        where = f"{self.where}.{name}" if self.where else name
        return _Obj(self.source, where, self.get(name), allowed)


def parse_config(text: str | bytes, source: str = "device config", *, read_keys_file: Callable[[str], str] | None = None) -> DeviceConfig:
    """Parse and validate a configuration document. `read_keys_file(path)` returns the text of a
    key file the document references with "keys_file" (the loader supplies it)."""
    try:
        raw = loads_object(text, what=source)
    except ProtocolError as exc:
        raise DeviceConfigError(f"{source}: {exc.message}") from None
    if isinstance(raw, dict) and "channels" in raw:
        raise DeviceConfigError(f"{source}: channels: a POS holds no channel settings or secrets any more; give them to the "
                          "gateway (gateway-admin merchant set) and configure \"gateway\": {\"url\", \"pinned_cert\"} here")
    top = _Obj(source, "", raw, _TOP)
    if top.get("format") != FORMAT:
        raise top.fail("format", f"must be {FORMAT!r}, got {top.obj['format']!r}")
    dev = top.sub("device", {"device_id", "model", "serial_no"})
    assert dev is not None
    device = DeviceInfo(dev.ident("device_id"), _req(dev.text("model", max_len=64)), _req(dev.text("serial_no", max_len=64)))
    merchant = top.sub("merchant", {"name", "name_en"})
    assert merchant is not None
    keys, keys_file = _keys(top, source, read_keys_file)
    terminals = _terminals(top)
    limit_fen = DEFAULT_LIMIT_FEN
    limits = top.sub("limits", {"per_transaction"}, optional=True)
    if limits is not None:
        try:
            limit_fen = parse_yuan(limits.get("per_transaction"), allow_zero=False)
        except ProtocolError as exc:
            raise limits.fail("per_transaction", f"is not a yuan amount such as \"5000.00\": {exc.message}") from None
    fresh = top.sub("freshness", {"instruction_skew_s", "msg_id_memory_s"}, optional=True)
    memory_s = DEFAULT_MSG_ID_MEMORY_S if fresh is None else fresh.integer("msg_id_memory_s", 24 * 3600, MAX_MEMORY_S, DEFAULT_MSG_ID_MEMORY_S)
    skew_s = memory_s if fresh is None else fresh.integer("instruction_skew_s", 60, MAX_MEMORY_S, memory_s)
    if fresh is not None and skew_s > memory_s:
        raise fresh.fail("instruction_skew_s", f"({skew_s}) must not exceed msg_id_memory_s ({memory_s}): an envelope "
                         "older than the msg_id memory would be accepted again")
    sup = top.sub("supervisor", {"pin_hash", "max_wrong_tries", "lockout_s"})
    assert sup is not None
    supervisor = Supervisor(_pin_hash(sup), sup.integer("max_wrong_tries", 1, 20, pins.DEFAULT_MAX_TRIES),
                            sup.integer("lockout_s", 10, 24 * 3600, pins.DEFAULT_LOCKOUT_S))
    admin = top.sub("admin", {"pin_hash"}, optional=True)
    gateway = None
    gw = top.sub("gateway", {"url", "pinned_cert"}, optional=True)
    if gw is not None:
        try:
            gateway = parse_gateway(gw.get("url"), gw.get("pinned_cert") if gw.has("pinned_cert") else None)
        except ValueError as exc:
            raise gw.fail("pinned_cert" if "pinned_cert" in str(exc) else "url", str(exc)) from None
    comment = top.text("comment", max_len=1024, optional=True)
    printer = None
    printer_obj = top.sub("printer", {"command"}, optional=True)
    if printer_obj is not None:
        try:
            printer = parse_print_command(printer_obj.get("command"))
        except ValueError as exc:
            raise printer_obj.fail("command", str(exc)) from None
    return DeviceConfig(
        device=device,
        merchant_name=_req(merchant.text("name", max_len=64)),
        merchant_name_en=merchant.text("name_en", max_len=64, optional=True),
        keys=keys,
        keys_file=keys_file,
        terminals=terminals,
        supervisor=supervisor,
        gateway=gateway,
        limit_fen=limit_fen,
        instruction_skew_s=skew_s,
        msg_id_memory_s=memory_s,
        admin_pin_hash=None if admin is None else _pin_hash(admin),
        polling=_polling(top),
        config_version=top.integer("config_version", 0, 2**31 - 1, 0),
        comment=comment,
        printer=printer,
        his_signature=_his_signature(top),
    )


def _his_signature(top: _Obj) -> HisSignaturePolicy:
    sig = top.sub("his_signature", {"public_keys", "require", "require_terminals"}, optional=True)
    if sig is None:
        return NO_HIS_SIGNATURE
    raw_keys = sig.get("public_keys")
    if not isinstance(raw_keys, list) or not raw_keys or len(raw_keys) > 8:
        raise sig.fail("public_keys", "must be a list of 1 to 8 HIS public keys (base64 of the 32-byte Ed25519 key)")
    keys = []
    for index, text in enumerate(raw_keys):
        try:
            keys.append(decode_public_key(text if isinstance(text, str) else ""))
        except ValueError as exc:
            raise sig.fail(f"public_keys[{index}]", str(exc)) from None
    required = sig.obj.get("require", False)
    if not isinstance(required, bool):
        raise sig.fail("require", "must be true or false")
    terminals = sig.obj.get("require_terminals", [])
    if not isinstance(terminals, list) or not all(is_valid_id(t) for t in terminals):
        raise sig.fail("require_terminals", "must be a list of terminal IDs")
    return HisSignaturePolicy(tuple(keys), required, frozenset(terminals))


def _req(value: str | None) -> str:
    assert value is not None
    return value


def _keys(top: _Obj, source: str, read_keys_file: Callable[[str], str] | None) -> tuple[KeyRing, str | None]:
    if top.has("keys") == top.has("keys_file"):
        raise top.fail("keys", "must be given either embedded (\"keys\") or by reference (\"keys_file\"), exactly one")
    if top.has("keys"):
        obj = top.get("keys")
        if not isinstance(obj, dict):
            raise top.fail("keys", f"must be a his-keys-v1 object, not {_kind(obj)}")
        text, where, path = json.dumps(obj), f"{source}: keys", None
    else:
        path = top.text("keys_file", max_len=512)
        assert path is not None
        if read_keys_file is None:
            raise top.fail("keys_file", "references a file, but no file reader was given (use load_config)")
        try:
            text = read_keys_file(path)
        except OSError as exc:
            raise top.fail("keys_file", f"{path!r} cannot be read: {exc.strerror or exc}") from None
        where = f"{source}: keys_file {path}"
    try:
        ring = parse_keyfile(text, source=where)
    except KeyFileError as exc:
        raise DeviceConfigError(str(exc)) from None
    if not ring.active():
        raise top.fail("keys", "holds no active (non-retired) key; the device could not answer anything")
    return ring, path


def _terminals(top: _Obj) -> tuple[TerminalRecord, ...]:
    raw = top.get("terminals")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_TERMINALS:
        raise top.fail("terminals", f"must be a list of 1 to {MAX_TERMINALS} terminals")
    seen: set[str] = set()
    out: list[TerminalRecord] = []
    for index, item in enumerate(raw):
        entry = _Obj(top.source, f"terminals[{index}]", item, {"terminal_id", "description"})
        terminal_id = entry.ident("terminal_id")
        if terminal_id in seen:
            raise entry.fail("terminal_id", f"{terminal_id!r} appears twice")
        seen.add(terminal_id)
        out.append(TerminalRecord(terminal_id, _req(entry.text("description", max_len=128))))
    return tuple(out)


def _pin_hash(obj: _Obj) -> pins.PinHash:
    try:
        return pins.parse_pin_hash(obj.get("pin_hash"))
    except pins.PinHashError as exc:
        raise obj.fail("pin_hash", f"is not usable: {exc}") from None


def _polling(top: _Obj) -> dict[PayChannel, Polling]:
    channels = {c.value for c in PayChannel}
    poll = top.sub("polling", channels, optional=True)
    if poll is None:
        return {}
    out: dict[PayChannel, Polling] = {}
    for name in sorted(poll.obj):
        entry = poll.sub(name, {"query_interval_s", "pay_deadline_s", "reverse_not_before_s"})
        assert entry is not None
        out[PayChannel(name)] = Polling(entry.seconds("query_interval_s", *QUERY_INTERVAL_RANGE),
                                        entry.seconds("pay_deadline_s", *PAY_DEADLINE_RANGE),
                                        entry.seconds("reverse_not_before_s", *REVERSE_NOT_BEFORE_RANGE))
    return out


def _kind(value: object) -> str:
    return "null" if value is None else "a boolean" if isinstance(value, bool) else type(value).__name__


def config_to_json_obj(config: DeviceConfig) -> dict[str, object]:
    """The document for `config` (keys embedded unless it referenced a file): what provisioning
    tools write and flash. `parse_config(dump_config(c))` gives back an equal configuration."""
    obj: dict[str, object] = {"format": FORMAT, "config_version": config.config_version}
    if config.comment is not None:
        obj["comment"] = config.comment
    obj["device"] = {"device_id": config.device.device_id, "model": config.device.model, "serial_no": config.device.serial_no}
    merchant: dict[str, object] = {"name": config.merchant_name}
    if config.merchant_name_en is not None:
        merchant["name_en"] = config.merchant_name_en
    obj["merchant"] = merchant
    if config.keys_file is not None:
        obj["keys_file"] = config.keys_file
    else:
        obj["keys"] = json.loads(format_keyfile(config.keys))
    obj["terminals"] = [{"terminal_id": t.terminal_id, "description": t.description} for t in config.terminals]
    obj["limits"] = {"per_transaction": format_yuan(config.limit_fen)}
    obj["freshness"] = {"instruction_skew_s": config.instruction_skew_s, "msg_id_memory_s": config.msg_id_memory_s}
    obj["supervisor"] = {"pin_hash": config.supervisor.pin_hash.encode(), "max_wrong_tries": config.supervisor.max_wrong_tries,
                         "lockout_s": config.supervisor.lockout_s}
    if config.admin_pin_hash is not None:
        obj["admin"] = {"pin_hash": config.admin_pin_hash.encode()}
    if config.gateway is not None:
        gateway: dict[str, object] = {"url": config.gateway.url}
        if config.gateway.pinned_cert is not None:
            gateway["pinned_cert"] = config.gateway.pinned_cert
        obj["gateway"] = gateway
    if config.polling:
        obj["polling"] = {
            channel.value: {k: v for k, v in (("query_interval_s", p.query_interval_s), ("pay_deadline_s", p.pay_deadline_s),
                                              ("reverse_not_before_s", p.reverse_not_before_s)) if v is not None}
            for channel, p in config.polling.items()
        }
    if config.printer is not None:
        obj["printer"] = {"command": config.printer.command}
    policy = config.his_signature
    if policy.public_keys:
        obj["his_signature"] = {"public_keys": [encode_public_key(k) for k in policy.public_keys], "require": policy.required,
                                "require_terminals": sorted(policy.required_terminals)}
    return obj


def dump_config(config: DeviceConfig) -> str:
    return json.dumps(config_to_json_obj(config), ensure_ascii=False, indent=2) + "\n"


def load_config(path: str | os.PathLike[str], *, check_permissions: bool = True) -> DeviceConfig:
    """Read and parse a configuration file; "keys_file" is resolved relative to it.

    On POSIX a file holding keys must not be readable by group or others (chmod 600)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeviceConfigError(f"cannot read the device configuration {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DeviceConfigError(f"{path}: not UTF-8 text") from None

    def read_keys(name: str) -> str:
        key_path = path.parent / name
        if check_permissions:
            _check_private(key_path)
        return key_path.read_text(encoding="utf-8")

    config = parse_config(text, source=str(path), read_keys_file=read_keys)
    if check_permissions and config.keys_file is None:
        _check_private(path)
    return config


def _check_private(path: Path) -> None:
    if os.name != "posix":
        return  # Windows ACLs are set by the installer; mode bits mean little there.
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # the read that follows reports the real problem
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DeviceConfigError(f"{path} holds shared keys but other users can read it (mode {stat.S_IMODE(mode):o}); "
                          f"run: chmod 600 {path}")
