"""Compatibility for the channel sandbox only: the codec moved to `gateway.channels.alipay_codec`.

TODO(issue 13): the sandbox (firmware_sim/sandbox, owned by another helper today) imports this path;
once it imports gateway.channels.alipay_codec, delete this file. Nothing on the POS uses it
(tests/test_structure.py allows exactly these two files to reach the gateway).
"""

from gateway.channels.alipay_codec import *  # noqa: F401,F403
