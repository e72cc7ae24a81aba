"""The hospital's per-transaction limit as it is provisioned: the "hospital-limits-v1" document.

The one source of the limit is the hospital's setting in the gateway (`gateway.tenancy.Hospital.
txn_limit_fen`, set by `gateway-admin hospital add --txn-limit`); the gateway enforces it on every
payment (`gateway.ledger.start_payment`). `gateway-admin hospital limits H001 --out limits.json`
writes it as this document, and the same file provisions the two components that refuse early:

- the POS: `pos-flash provision config --limits limits.json` writes `limits.per_transaction`;
- the bridge: `[security] limits_file = "limits.json"` in its config.toml.

Both then refuse an amount above it with `bad_amount` before anything moves (`protocol.amount.
parse_amount`), the code HIS also gets when the gateway refuses it (a device provisioned before the
hospital lowered its limit). Strict JSON; every problem raises `LimitsError` naming the field:

    {"format": "hospital-limits-v1", "hospital_id": "H001", "per_transaction": "50000.00"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from protocol.amount import DEFAULT_LIMIT_FEN, MAX_FEN, format_yuan, parse_yuan
from protocol.errors import CodedError, ProtocolError
from protocol.ids import is_valid_id
from protocol.strictjson import loads_object

FORMAT = "hospital-limits-v1"
_FIELDS = frozenset({"format", "hospital_id", "per_transaction"})


class LimitsError(CodedError, ValueError):
    """A hospital-limits document is not one; the message names the source and the field."""

    code = "bad_limits"


@dataclass(frozen=True, slots=True)
class HospitalLimits:
    hospital_id: str
    per_transaction_fen: int = DEFAULT_LIMIT_FEN

    def __post_init__(self) -> None:
        if type(self.per_transaction_fen) is not int or not 0 < self.per_transaction_fen <= MAX_FEN:
            raise ValueError(f"per_transaction_fen must be an int in 1..{MAX_FEN}, got {self.per_transaction_fen!r}")


def format_limits(limits: HospitalLimits) -> str:
    """The document's text (one line of JSON and a newline)."""
    return json.dumps({"format": FORMAT, "hospital_id": limits.hospital_id,
                       "per_transaction": format_yuan(limits.per_transaction_fen)}, ensure_ascii=False) + "\n"


def parse_limits(text: str | bytes, *, source: str = "limits file") -> HospitalLimits:
    """Read a hospital-limits-v1 document; LimitsError names `source` and what is wrong."""
    try:
        obj = loads_object(text, what=source)
    except ProtocolError as exc:
        raise LimitsError(f"{source}: {exc.message}") from None
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise LimitsError(f"{source}: unknown field {unknown[0]!r} (a hospital-limits-v1 document has {', '.join(sorted(_FIELDS))})")
    if obj.get("format") != FORMAT:
        raise LimitsError(f"{source}: format must be {FORMAT!r}, got {obj.get('format')!r} "
                          "(write it with: gateway-admin hospital limits HOSPITAL_ID --out FILE)")
    hospital_id = obj.get("hospital_id")
    if not isinstance(hospital_id, str) or not is_valid_id(hospital_id):
        raise LimitsError(f"{source}: hospital_id {hospital_id!r} must match [A-Za-z0-9_-]{{1,64}}")
    if "per_transaction" not in obj:
        raise LimitsError(f"{source}: per_transaction is missing (yuan, such as \"50000.00\")")
    try:
        fen = parse_yuan(obj["per_transaction"], allow_zero=False)
    except ProtocolError as exc:
        raise LimitsError(f"{source}: per_transaction is not a yuan amount such as \"50000.00\": {exc.message}") from None
    return HospitalLimits(hospital_id, fen)
