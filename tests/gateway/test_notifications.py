"""The Alipay notification form and its signature, by property: what Alipay signs verifies, any change
to a signed field does not, and the form parser reads back exactly what was encoded (or refuses it)."""

from __future__ import annotations

import urllib.parse

import pytest
from Crypto.PublicKey import RSA
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.channels.alipay_codec import notify_sign_content, rsa2_sign, rsa2_verify
from gateway.errors import GatewayCode, GatewayError
from gateway.notifications import parse_form

KEY = RSA.generate(2048)
names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="&="), min_size=1, max_size=12)
values = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
forms = st.dictionaries(names.filter(lambda n: n not in ("sign", "sign_type")), values, min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(forms)
def test_the_form_reads_back_what_was_encoded(form: dict[str, str]) -> None:
    assert parse_form(urllib.parse.urlencode(form).encode("utf-8")) == form


@settings(max_examples=40, deadline=None)
@given(forms, st.data())
def test_a_signed_notification_verifies_and_any_change_does_not(form: dict[str, str], data: st.DataObject) -> None:
    signed = {**form, "sign_type": "RSA2"}
    signature = rsa2_sign(notify_sign_content(signed), KEY)
    assert rsa2_verify(notify_sign_content(signed).encode("utf-8"), signature, KEY.public_key())
    # sign_type is not signed: changing it does not break the signature (Alipay's rule for notifications).
    assert notify_sign_content({**signed, "sign_type": "RSA"}) == notify_sign_content(signed)
    name = data.draw(st.sampled_from(sorted(n for n, v in form.items() if v != "") or ["extra"]))
    changed = {**signed, name: signed.get(name, "") + "x"}
    assert not rsa2_verify(notify_sign_content(changed).encode("utf-8"), signature, KEY.public_key())


@pytest.mark.parametrize("body", [b"a=1&a=2", b"\xff=1", b"novalue"])
def test_a_bad_form_is_refused(body: bytes) -> None:
    with pytest.raises(GatewayError) as refused:
        parse_form(body)
    assert refused.value.code is GatewayCode.BAD_REQUEST
