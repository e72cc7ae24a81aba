"""Alipay RSA2 signing and signed-reply parsing: cross-checked against an independent RSA library."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.channels.alipay_codec import AlipayReplyError, load_private_key, load_public_key, parse_reply, rsa2_sign, rsa2_verify, sign_content
from tests.budget import examples

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PRIVATE_PEM = _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
_PUBLIC_PEM = _KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
PRIVATE = load_private_key(_PRIVATE_PEM)
PUBLIC = load_public_key(_PUBLIC_PEM)


def test_sign_content_follows_alipays_documented_example():
    # Alipay "自行实现签名": sort, drop sign and empty values, k=v joined by &, raw (not URL-encoded).
    params = {"app_id": "2014072300007148", "method": "alipay.mobile.public.menu.add", "charset": "GBK", "sign_type": "RSA2",
              "timestamp": "2014-07-24 03:07:50", "biz_content": '{"button":[{"name":"查询"}]}', "version": "1.0",
              "sign": "ignored", "notify_url": ""}
    assert sign_content(params) == ('app_id=2014072300007148&biz_content={"button":[{"name":"查询"}]}&charset=GBK'
                                    '&method=alipay.mobile.public.menu.add&sign_type=RSA2&timestamp=2014-07-24 03:07:50&version=1.0')


def test_our_signature_verifies_with_an_independent_implementation_and_back():
    content = "app_id=1&biz_content={\"total_amount\":\"12.50\"}&method=alipay.trade.pay"
    ours = base64.b64decode(rsa2_sign(content, PRIVATE))
    _KEY.public_key().verify(ours, content.encode(), padding.PKCS1v15(), hashes.SHA256())
    theirs = base64.b64encode(_KEY.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    assert rsa2_verify(content.encode(), theirs, PUBLIC)
    assert not rsa2_verify((content + " ").encode(), theirs, PUBLIC)
    with pytest.raises(InvalidSignature):
        _KEY.public_key().verify(ours, (content + "x").encode(), padding.PKCS1v15(), hashes.SHA256())


def test_keys_load_from_bare_base64_as_alipays_tool_prints_them():
    bare = "".join(line for line in _PUBLIC_PEM.splitlines() if not line.startswith("-----"))
    assert load_public_key(bare) == PUBLIC
    with pytest.raises(ValueError):
        load_private_key(_PUBLIC_PEM)
    with pytest.raises(ValueError):
        load_public_key("not a key")


def _reply(node_text: str, method: str = "alipay.trade.pay", sign: str | None = None) -> bytes:
    signature = sign if sign is not None else rsa2_sign(node_text, PRIVATE)
    name = method.replace(".", "_") + "_response"
    return ('{"' + name + '": ' + node_text + ' ,\n "sign":"' + signature + '"}').encode("utf-8")


def test_the_signature_covers_the_exact_node_text_not_a_reserialisation():
    # Spacing, escapes and key order as Alipay sent them; a re-serialisation would differ.
    node_text = '{ "code":"10000","msg":"Success","total_amount":"12.50","subject":"\\u95e8\\u8bca","list":[{"a":1}] }'
    reply = parse_reply(_reply(node_text), "alipay.trade.pay")
    assert reply.raw_node == node_text and reply.node["subject"] == "门诊"
    assert rsa2_verify(reply.raw_node.encode(), reply.sign or "", PUBLIC)
    assert json.dumps(reply.node) != node_text


def test_error_response_is_found_when_the_method_node_is_absent():
    body = b'{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-method"},"sign":"x"}'
    reply = parse_reply(body, "alipay.trade.pay")
    assert reply.node_name == "error_response" and reply.node["code"] == "40002"


@pytest.mark.parametrize("body", [
    b'{"alipay_trade_pay_response":{"code":"10000"},"alipay_trade_pay_response":{"code":"40004"},"sign":"x"}',
    b'{"alipay_trade_pay_response":{"code":"10000","code":"40004"},"sign":"x"}',
    b'{"alipay_trade_pay_response":{"code":"10000"},"sign":"x"} trailing',
    b'{"alipay_trade_pay_response":["not an object"],"sign":"x"}',
    b'{"alipay_trade_pay_response":{"code":NaN},"sign":"x"}',
    b'{"other":{}}',
    b'\xff\xfe',
    b'[]',
    b'',
])
def test_refuses_replies_that_could_be_read_two_ways_or_not_at_all(body):
    with pytest.raises(AlipayReplyError):
        parse_reply(body, "alipay.trade.pay")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=examples(60))
@given(st.dictionaries(st.text(max_size=10), _json_values, max_size=6), st.booleans())
def test_any_signed_node_round_trips_and_verifies(node, ascii_only):
    node_text = json.dumps(node, ensure_ascii=ascii_only)
    reply = parse_reply(_reply(node_text), "alipay.trade.pay")
    assert reply.raw_node == node_text and reply.node == node
    assert rsa2_verify(reply.raw_node.encode("utf-8"), reply.sign or "", PUBLIC)


@given(st.binary(max_size=1024))
def test_arbitrary_bytes_are_parsed_or_refused_cleanly(data):
    try:
        parse_reply(data, "alipay.trade.pay")
    except AlipayReplyError:
        pass


@given(st.text(max_size=200))
def test_arbitrary_signatures_never_verify_and_never_crash(signature):
    assert not rsa2_verify(b"content", signature, PUBLIC)
