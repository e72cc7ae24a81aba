"""The shared-key file (protocol/keyfile.py)."""

import pytest

from protocol.crypto import SharedKey
from protocol.keyfile import KeyFileError, format_keyfile, parse_keyfile


def test_keyfile_round_trip():
    keys = [SharedKey("k2026a", "AES-256-GCM", bytes(range(32))), SharedKey("k2025", "SM4-GCM", bytes(16), retired=True)]
    ring = parse_keyfile(format_keyfile(keys))
    assert list(ring) == keys


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{}", "format is missing"),
        ('{"format":"x","keys":[]}', "format must be"),
        ('{"format":"his-keys-v1","keys":[{"kid":"k 1","suite":"SM4-GCM","key_hex":"00"}]}', "kid"),
        ('{"format":"his-keys-v1","keys":[{"kid":"k1","suite":"DES","key_hex":"00"}]}', "suite"),
        ('{"format":"his-keys-v1","keys":[{"kid":"k1","suite":"SM4-GCM","key_hex":"zz"}]}', "not hex"),
        ('{"format":"his-keys-v1","keys":[{"kid":"k1","suite":"SM4-GCM","key_hex":"00"}]}', "must be 16 bytes"),
        ('{"format":"his-keys-v1","keys":[{"kid":"k1","suite":"SM4-GCM","key_hex":"' + "00" * 16 + '","retired":1}]}', "true or false"),
    ],
)
def test_keyfile_errors_never_show_the_key(text, why):
    with pytest.raises(KeyFileError) as info:
        parse_keyfile(text, "keys.json")
    assert why in str(info.value) and "keys.json" in str(info.value)
    assert "00" * 16 not in str(info.value)
