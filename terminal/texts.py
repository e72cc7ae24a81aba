"""What the cashier reads: every message the service shows, in Chinese (first) and English.

The service never builds sentences elsewhere; the UI picks `zh` or `en` from a `Text`. Reasons a
collection or refund did not simply succeed are keyed by `protocol.messages.ResultCode`, so the
result screen, the history and the receipt all say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import PayChannel, ResultCode


@dataclass(frozen=True, slots=True)
class Text:
    zh: str
    en: str

    def __str__(self) -> str:
        return f"{self.zh} / {self.en}"


CHANNEL_NAME: dict[PayChannel, Text] = {
    PayChannel.WECHAT: Text("微信支付", "WeChat Pay"),
    PayChannel.ALIPAY: Text("支付宝", "Alipay"),
    PayChannel.UNIONPAY: Text("银联", "UnionPay"),
}

IDLE = Text("等待收费指令", "Waiting for the next order")
JOURNAL_LOCKED = Text("交易记录损坏，暂停收费。请联系维护人员恢复记录", "Transaction records are damaged: payments are paused. Call IT to restore them")
STORAGE_FULL = Text("存储空间已满，暂停收费。请联系维护人员", "Storage is full: payments are paused. Call IT")
STORAGE_UNAVAILABLE = Text("交易记录暂时无法写入，请稍候", "Transaction records cannot be written right now; please wait")
SCAN_PROMPT = Text("请扫描患者的付款码", "Scan the patient's payment code")
REFUND_PROMPT = Text("退款需主管输入密码确认", "A supervisor must confirm this refund with the PIN")
QUEUED = Text("排队中，等待上一笔完成", "Waiting for the previous order to finish")
PAYING = Text("正在支付…", "Paying…")
USER_PAYING = Text("请患者在手机上确认支付", "Ask the patient to confirm the payment on the phone")
CONFIRMING = Text("正在向支付渠道确认结果，请稍候", "Confirming the result with the payment channel, please wait")
REVERSING = Text("正在撤销本笔支付，请稍候", "Cancelling this payment with the channel, please wait")
REFUNDING = Text("正在退款…", "Refunding…")
DECLINED_CHOICE = Text("可请患者换一种付款方式后重新扫码，或取消", "Scan again (the patient may choose another method) or cancel")
BUSY = Text("正在处理，请稍候", "Working on it, please wait")
NOTHING_TO_SCAN = Text("当前没有等待扫码的收费", "No collection is waiting for a code")
CHANNEL_NOT_CONFIGURED = Text("本机未开通该支付方式", "This payment method is not set up on this device")
WRONG_PIN = Text("密码错误", "Wrong PIN")
ADMIN_PIN_NOT_SET = Text("本机未设置管理密码，设置不可用", "No settings PIN is configured on this device")
EXPIRED = Text("该指令已过期，不能再收费或退款", "This instruction has expired: no payment or refund starts now")
PIN_LOCKED = Text("密码错误次数过多，请稍后再试", "Too many wrong PINs; try again later")

NOTHING_NEEDS_PERSON = Text("没有待人工处理的交易", "Nothing is waiting for a person")
RECHECKING = Text("正在重新向支付渠道查询…", "Asking the payment channel again…")
WAITING_TO_REVERSE = Text("正在撤销本笔支付：微信支付要求付款后至少15秒才能撤销，请稍候",
                          "Cancelling this payment: WeChat Pay allows it 15 s after the payment at the earliest; please wait")
# An instruction handed to a person (terminal.machine.NeedsPerson): what happened, what to do.
NEEDS_PERSON: dict[str, Text] = {
    "unverified_reply": Text("需人工处理：支付渠道的应答无法验证（平台证书或支付宝公钥可能配置错误），渠道可能已扣款或退款。请通知服务商核对密钥，并在商户平台核实此笔交易后点下方按钮重新查询",
                             "Needs a person: the channel's replies cannot be verified (its certificate or public key at the gateway may be wrong); money may have moved. Ask the provider to check the keys, check this transaction on the merchant platform, then press Check again"),
    "reverse_failing": Text("需人工处理：多次撤销未成功，患者可能已付款。请在商户平台核实此笔支付（必要时手工撤销或退款）后点下方按钮重新查询",
                            "Needs a person: the payment could not be cancelled after many tries and may have been taken. Check it on the merchant platform (cancel or refund it there if needed), then press Check again"),
    "refund_abnormal": Text("需人工处理：退款异常（患者银行卡已注销或冻结）。请在微信支付商户平台-交易中心手动处理此笔退款后点下方按钮重新查询",
                            "Needs a person: the refund bounced (the patient's card is closed or frozen). Resolve it by hand on the WeChat Pay merchant platform (Transactions), then press Check again"),
    "refund_unconfirmed": Text("需人工处理：多次查询仍无法确认退款结果。请勿重复退款；在商户平台核实此笔退款后点下方按钮重新查询",
                               "Needs a person: the refund could not be confirmed after many queries. Do not refund again; check it on the merchant platform, then press Check again"),
}


def needs_person_text(code: str | None) -> Text:
    return NEEDS_PERSON.get(code or "", Text(f"需人工处理（{code}）", f"Needs a person ({code})"))


RESULT_SUCCESS = Text("收款成功", "Payment received")
RESULT_REFUNDED = Text("退款成功", "Refund done")

REASON: dict[ResultCode, Text] = {
    ResultCode.DUPLICATE_ORDER: Text("该订单已收款，本次未重复扣款", "This order was already paid; nothing was charged again"),
    ResultCode.INSUFFICIENT_FUNDS: Text("患者余额不足", "The patient's balance is insufficient"),
    ResultCode.CODE_INVALID: Text("付款码已失效，请患者刷新付款码", "The payment code has expired or was used; ask the patient to refresh it"),
    ResultCode.DECLINED: Text("支付渠道拒绝了本笔支付", "The payment channel declined this payment"),
    ResultCode.USER_CANCELLED: Text("患者在手机上取消了支付", "The patient cancelled on the phone"),
    ResultCode.CANCELLED: Text("已取消，未扣款", "Cancelled; nothing was charged"),
    ResultCode.PAY_TIMEOUT: Text("患者未及时确认，已撤销，未扣款", "The patient did not confirm in time; cancelled, nothing was charged"),
    ResultCode.CHANNEL_ERROR: Text("支付渠道无法确认，已撤销，未扣款", "The channel could not confirm; cancelled, nothing was charged"),
    ResultCode.ORDER_NOT_PAID: Text("该订单未在本机收款，不能退款", "This order was not paid on this device; it cannot be refunded"),
    ResultCode.REFUND_EXCEEDS_REMAINING: Text("退款金额超过可退余额", "The refund is more than what remains refundable"),
    ResultCode.SUPERVISOR_DECLINED: Text("主管未确认，未退款", "Not confirmed by a supervisor; nothing was refunded"),
    ResultCode.REFUND_REJECTED: Text("支付渠道拒绝了退款", "The payment channel refused the refund"),
    ResultCode.EXPIRED: Text("指令已过期，未收款也未退款", "The instruction expired; nothing was charged or refunded"),
    ResultCode.WITHDRAWN: Text("HIS 已撤回该指令，未收款也未退款", "HIS withdrew this instruction; nothing was charged or refunded"),
    ResultCode.MERCHANT_CONFIG: Text("商户支付配置有误，渠道未受理，未扣款。请联系服务商", "The merchant's payment settings are wrong; the channel did not process it, nothing moved. Call the provider"),
    ResultCode.REFUND_WINDOW_CLOSED: Text("已超过渠道可退款期限（微信支付：一年），不能原路退款", "Past the channel's refund period (WeChat Pay: one year); it cannot be refunded to the patient's account"),
    ResultCode.TOO_MANY_REFUNDS: Text("该笔支付的部分退款次数已达上限（微信支付：50次）", "This payment has had the most partial refunds the channel allows (WeChat Pay: 50)"),
}


def reason_text(code: str | None) -> Text | None:
    """The plain-words reason for a result's error_code (None when there is none)."""
    if code is None:
        return None
    try:
        return REASON[ResultCode(code)]
    except ValueError:
        return Text(f"未完成（{code}）", f"Not completed ({code})")
