"""The WeChat Pay and Alipay clients, in the gateway: the only place that holds merchant keys.

They implement the outcome interface the POS also speaks (`terminal.channels.base.ChannelClient`),
sign requests and verify replies exactly as the channels require, and are built per hospital from
its sealed credentials (`gateway.channel_clients`):

    from gateway.channels import build_clients
    clients = build_clients({"wechat": {...}, "alipay": {...}})   # {PayChannel: client}

See `settings` for the JSON shape, `wechat` / `alipay` for the clients and their config dataclasses.
Moved here from terminal/channels (issue 13): the POS talks to the gateway, never to a channel.
"""

from gateway.channels.settings import build_clients, settings_from_sandbox

__all__ = ["build_clients", "settings_from_sandbox"]
