"""What the POS knows of a payment channel: the outcomes and the `ChannelClient` interface (`base`).

The POS never speaks to WeChat Pay or Alipay itself and holds none of their secrets: its client is
`terminal.gateway_client.GatewayChannelClient`, which asks the provider's gateway. The channel
clients proper live in the gateway (`gateway/channels`).
"""
