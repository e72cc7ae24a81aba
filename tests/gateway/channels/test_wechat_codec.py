"""WeChat Pay v2 signatures and XML: the documentation's known answers, refusals, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.channels.wechat_codec import MAX_XML_BYTES, WeChatXmlError, parse_xml, sign, sign_string, to_xml, verify

# WeChat Pay "安全规范 / 签名算法" worked example (pay.weixin.qq.com, API v2).
DOC_FIELDS = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000", "body": "test", "nonce_str": "ibuaiVcKdpRxkhJA"}
DOC_KEY = "192006250b4c09247ec02edce69f6a2d"


def test_known_answer_from_wechat_documentation():
    assert sign_string(DOC_FIELDS, DOC_KEY) == (
        "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"
        "&key=192006250b4c09247ec02edce69f6a2d")
    assert sign(DOC_FIELDS, DOC_KEY, "MD5") == "9A0A8659F005D6984697E2CA0A9CF3B7"
    assert sign(DOC_FIELDS, DOC_KEY, "HMAC-SHA256") == "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"


def test_sign_ignores_the_sign_field_and_empty_values():
    fields = {**DOC_FIELDS, "sign": "WHATEVER", "attach": ""}
    assert sign(fields, DOC_KEY) == sign(DOC_FIELDS, DOC_KEY)


def test_verify_refuses_any_change():
    signed = {**DOC_FIELDS, "sign": sign(DOC_FIELDS, DOC_KEY)}
    assert verify(signed, DOC_KEY)
    assert not verify({**signed, "body": "tesT"}, DOC_KEY)
    assert not verify({**signed, "extra": "1"}, DOC_KEY)
    assert not verify(signed, DOC_KEY[:-1] + "e")
    assert not verify({k: v for k, v in signed.items() if k != "sign"}, DOC_KEY)
    assert not verify({**signed, "sign": signed["sign"].lower()}, DOC_KEY)
    assert not verify({**signed, "sign": "é" * 64}, DOC_KEY)
    assert not verify(signed, DOC_KEY, "SHA1")


def test_parses_a_real_shaped_reply():
    reply = (b'<xml><return_code><![CDATA[SUCCESS]]></return_code>\n  <return_msg><![CDATA[OK]]></return_msg>\n'
             b'<total_fee>1</total_fee><err_code_des><![CDATA[\xe4\xbd\x99\xe9\xa2\x9d\xe4\xb8\x8d\xe8\xb6\xb3]]></err_code_des></xml>')
    assert parse_xml(reply) == {"return_code": "SUCCESS", "return_msg": "OK", "total_fee": "1", "err_code_des": "余额不足"}


@pytest.mark.parametrize("document, why", [
    (b'<!DOCTYPE xml [<!ENTITY a "b">]><xml><a>&a;</a></xml>', "DOCTYPE"),
    (b'<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml/>', "DOCTYPE"),
    (b"<xml><a>&undefined;</a></xml>", "well-formed"),
    (b"<xml><a>1</a><a>2</a></xml>", "duplicate"),
    (b'<xml><a x="1">1</a></xml>', "attributes"),
    (b"<xml><a><b>1</b></a></xml>", "nested"),
    (b"<root><a>1</a></root>", "root"),
    (b"<xml>text<a>1</a></xml>", "outside"),
    (b"", "well-formed"),
    (b"<xml><a>1</a></xml><xml/>", "well-formed"),
    (b"<xml>" + b"<a>1</a>" * 1 + b" " * MAX_XML_BYTES + b"</xml>", "exceeds"),
])
def test_refuses_documents_that_are_not_flat_wechat_xml(document, why):
    with pytest.raises(WeChatXmlError, match=why):
        parse_xml(document)


_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,19}", fullmatch=True)
_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00\ufffe\uffff"
                                + "".join(chr(c) for c in range(1, 32) if c not in (9, 10))), max_size=60)


@given(st.dictionaries(_names, _values, max_size=20))
def test_to_xml_and_parse_round_trip(fields):
    assert parse_xml(to_xml(fields)) == fields


@given(st.dictionaries(_names, _values, max_size=10), _values)
def test_signature_survives_the_wire_and_any_change_breaks_it(fields, key):
    signed = {**fields, "sign": sign(fields, key or "k")}
    received = parse_xml(to_xml(signed))
    assert verify(received, key or "k")
    for name, value in fields.items():
        if value:
            assert not verify({**received, name: value + "x"}, key or "k")


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_parse_or_are_refused_cleanly(data):
    try:
        fields = parse_xml(data)
    except WeChatXmlError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


@given(st.text(max_size=300).map(lambda t: ("<xml>" + t + "</xml>").encode("utf-8")))
def test_arbitrary_text_inside_the_root_parses_or_is_refused_cleanly(data):
    try:
        parse_xml(data)
    except WeChatXmlError:
        pass
