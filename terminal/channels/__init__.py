"""Payment channel clients (WeChat Pay, Alipay) behind one interface (`base.ChannelClient`)."""
