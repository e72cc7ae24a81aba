"""The payment-channel sandbox: WeChat Pay and Alipay as they behave, on loopback (see server.py)."""
