"""WeChat Pay API v2 wire format: flat `<xml>` documents and their signatures. Pure, no I/O.

Signature (WeChat Pay "安全规范 / 签名算法"): take every field except `sign` whose value is not
empty, sort by field name (ASCII), join as `k=v` with `&`, append `&key=<API key>`, then
HMAC-SHA256 keyed with the API key (or MD5 of the string, the legacy default), uppercase hex.
Replies are signed the same way with the request's sign_type; a reply with return_code FAIL
carries no signature at all.

Parsing is deliberately narrow: one `<xml>` root, child elements holding text or CDATA, nothing
else. A DOCTYPE, an entity declaration, attributes, nesting, duplicate fields or more than 64 KiB
are refused with `WeChatXmlError` (XML entity tricks and duplicate fields are how a forged reply
would try to make the signature check and the field reader see different documents).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Mapping
from xml.parsers import expat

from protocol.errors import CodedError

HMAC_SHA256 = "HMAC-SHA256"
MD5 = "MD5"
SIGN_TYPES = (HMAC_SHA256, MD5)

MAX_XML_BYTES = 64 * 1024
MAX_FIELDS = 256
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}", re.ASCII)
# Characters XML 1.0 cannot carry (and \r, which parsers normalise to \n, so it would not survive).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


class WeChatXmlError(CodedError, ValueError):
    """The bytes are not a WeChat Pay XML document we accept."""

    code = "wechat_xml"


def sign_string(fields: Mapping[str, str], api_key: str) -> str:
    """The exact string that is hashed (exposed for tests and for debugging a field engineer's setup)."""
    pairs = [f"{name}={fields[name]}" for name in sorted(fields) if name != "sign" and fields[name] != ""]
    return "&".join(pairs) + "&key=" + api_key


def sign(fields: Mapping[str, str], api_key: str, sign_type: str = HMAC_SHA256) -> str:
    message = sign_string(fields, api_key).encode("utf-8")
    if sign_type == HMAC_SHA256:
        return hmac.new(api_key.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()
    if sign_type == MD5:
        return hashlib.md5(message).hexdigest().upper()
    raise ValueError(f"unsupported WeChat Pay sign_type {sign_type!r}; use {HMAC_SHA256} or {MD5}")


def verify(fields: Mapping[str, str], api_key: str, sign_type: str = HMAC_SHA256) -> bool:
    """True only if `fields` carry a `sign` equal to the one computed with `api_key` (constant time)."""
    given = fields.get("sign")
    if not isinstance(given, str) or given == "" or sign_type not in SIGN_TYPES:
        return False
    expected = sign(fields, api_key, sign_type)
    return hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "surrogatepass"))


def to_xml(fields: Mapping[str, str]) -> bytes:
    """Serialise flat fields as WeChat does: `<xml><k><![CDATA[v]]></k>...</xml>`, UTF-8."""
    parts = ["<xml>"]
    for name, value in fields.items():
        if not isinstance(name, str) or _FIELD_NAME.fullmatch(name) is None:
            raise ValueError(f"WeChat field name {name!r} must be a letter or _ then up to 63 of [A-Za-z0-9_]")
        if not isinstance(value, str):
            raise ValueError(f"WeChat field {name} must be a string, not {type(value).__name__}")
        if _NOT_XML.search(value):
            raise ValueError(f"WeChat field {name} holds a character XML cannot carry")
        cdata = value.replace("]]>", "]]]]><![CDATA[>")
        parts.append(f"<{name}><![CDATA[{cdata}]]></{name}>")
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def parse_xml(data: bytes) -> dict[str, str]:
    """Parse a flat WeChat Pay document into {field: text}; raise WeChatXmlError otherwise."""
    if not isinstance(data, (bytes, bytearray)):
        raise WeChatXmlError(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_XML_BYTES:
        raise WeChatXmlError(f"document of {len(data)} bytes exceeds {MAX_XML_BYTES}")
    return _FlatXml().parse(bytes(data))


class _FlatXml:
    def __init__(self) -> None:
        self.depth = 0
        self.seen_root = False
        self.name: str | None = None
        self.text: list[str] = []
        self.fields: dict[str, str] = {}

    def parse(self, data: bytes) -> dict[str, str]:
        # Force UTF-8 whatever the declaration says: WeChat Pay speaks UTF-8 only.
        parser = expat.ParserCreate(encoding="UTF-8")
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._refuse_doctype
        parser.EntityDeclHandler = self._refuse_entity
        parser.ExternalEntityRefHandler = self._refuse_external
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        try:
            parser.Parse(data, True)
        except expat.ExpatError as exc:
            raise WeChatXmlError(f"not well-formed XML: {exc}") from None
        except RecursionError:
            raise WeChatXmlError("nesting too deep") from None
        if not self.seen_root:
            raise WeChatXmlError("no <xml> root element")
        return self.fields

    def _refuse_doctype(self, *args: object) -> None:
        raise WeChatXmlError("DOCTYPE is not allowed")

    def _refuse_entity(self, *args: object) -> None:
        raise WeChatXmlError("entity declarations are not allowed")

    def _refuse_external(self, *args: object) -> int:
        raise WeChatXmlError("external entities are not allowed")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if attrs:
            raise WeChatXmlError(f"element <{name}> has attributes")
        if self.depth == 1:
            if self.seen_root or name != "xml":
                raise WeChatXmlError(f"root element must be <xml>, not <{name}>")
            self.seen_root = True
        elif self.depth == 2:
            if _FIELD_NAME.fullmatch(name) is None:
                raise WeChatXmlError(f"field name {name[:64]!r} is not a WeChat field name")
            if name in self.fields:
                raise WeChatXmlError(f"duplicate field <{name}>")
            if len(self.fields) >= MAX_FIELDS:
                raise WeChatXmlError(f"more than {MAX_FIELDS} fields")
            self.name, self.text = name, []
        else:
            raise WeChatXmlError(f"nested element <{name}> inside a field")

    def _end(self, name: str) -> None:
        if self.depth == 2 and self.name is not None:
            self.fields[self.name] = "".join(self.text)
            self.name = None
        self.depth -= 1

    def _chars(self, data: str) -> None:
        if self.depth == 2:
            self.text.append(data)
        elif data.strip():
            raise WeChatXmlError("text outside a field")
