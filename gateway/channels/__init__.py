"""Payment channel clients (WeChat Pay, Alipay) behind one interface (`base.ChannelClient`).

    from gateway.channels import build_clients
    clients = build_clients(config["channels"], base_dir=config_dir)   # {PayChannel: client}

See `settings` for the JSON shape, `wechat` / `alipay` for the clients and their config dataclasses.
"""

from gateway.channels.settings import build_clients, settings_from_sandbox

__all__ = ["build_clients", "settings_from_sandbox"]
