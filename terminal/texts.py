"""Every string the POS shows, in Chinese (zh-CN, first) and English: the one catalogue.

Each entry has a key. The terminal service words its messages with the named constants below (each
one an entry of `STRINGS`, so it carries its key); the .kv files call `T("key", lang)` and Python
code calls `tr()`; a `Text` that came from the service is picked with `pick()`. Reasons a collection
or refund did not simply succeed are keyed `reason.<protocol.messages.ResultCode>`, so the result
screen, the history and the receipt all say the same thing. Formatted entries use `str.format`
fields, named so a translator sees what goes where.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.amount import Direction, format_yuan
from protocol.messages import PayChannel, ResultCode

LANGUAGES = ("zh", "en")  # zh: simplified Chinese (zh-CN), the default
DEFAULT_LANGUAGE = "zh"


def display_yuan(fen: int) -> str:
    """12345650 -> "123,456.50": protocol.amount's format with thousands grouped for the eye (the one
    display formatter: screens, the receipt data and the printed receipt)."""
    whole, _, cents = format_yuan(fen).partition(".")
    return f"{int(whole):,}.{cents}"


def display_money(direction: Direction, fen: int) -> str:
    """"¥1,234.50" for a collection, "-¥1,234.50" for a refund (receipts: never a bare number)."""
    return f"{'-' if direction is Direction.REFUND else ''}¥{display_yuan(fen)}"


@dataclass(frozen=True, slots=True)
class Text:
    zh: str
    en: str
    key: str = field(default="", compare=False)  # the catalogue key ("" for text made at run time)

    def __str__(self) -> str:
        return f"{self.zh} / {self.en}"


_ENTRIES: dict[str, Text] = {
    # shared
    "app.title": Text("医院自助收费 POS", "Hospital self-pay POS"),
    "btn.back": Text("返回", "Back"),
    "btn.cancel": Text("取消收款", "Cancel"),
    "btn.done": Text("完成", "Done"),
    "btn.ok": Text("确认", "OK"),
    "btn.clear": Text("清除", "Clear"),
    "btn.delete": Text("删除", "Del"),
    "dir.collect": Text("收款 COLLECT", "COLLECT 收款"),
    "dir.refund": Text("退款 REFUND", "REFUND 退款"),
    "yuan": Text("¥{amount}", "¥{amount}"),
    "sign.refund": Text("−", "−"),  # U+2212, wider and clearer than a hyphen
    "order_no": Text("订单号 {order_no}", "Order {order_no}"),
    "patient": Text("患者 {patient}", "Patient {patient}"),
    "queued": Text("另有 {n} 笔排队", "{n} more waiting"),
    "banner.test_env": Text("测试环境：沙箱支付，不会真实扣款", "TEST: sandbox payments, no real money moves"),
    # home
    "home.idle": Text("等待收费指令", "Waiting for the next order"),
    "home.device": Text("设备 {device_id}", "Device {device_id}"),
    "home.link.up": Text("收费电脑已连接", "Cashier PC connected"),
    "home.link.down": Text("收费电脑未连接", "Cashier PC not connected"),
    "home.link.connecting": Text("正在连接收费电脑", "Connecting to the cashier PC"),
    "home.net.reachable": Text("支付网关已连接", "Payment gateway connected"),
    "home.net.unreachable": Text("支付网关无法连接", "Payment gateway unreachable"),
    "home.net.disabled": Text("本机已被停用", "This device is disabled"),
    "home.net.unknown": Text("网络未检测", "Network not checked"),
    "home.needs_person": Text("{n} 笔交易待人工处理", "{n} payments need a person"),
    "home.today": Text("今日 {count} 笔", "Today: {count}"),
    "home.channel_count": Text("{channel}  {count} 笔", "{channel}: {count}"),
    "home.channel_line": Text("收 ¥{collected}    退 ¥{refunded}", "in ¥{collected}    out ¥{refunded}"),
    "home.no_totals": Text("今日尚无交易", "No payments yet today"),
    "home.history": Text("今日记录", "Today's list"),
    "home.reprint": Text("重打小票", "Reprint"),
    "home.nothing_to_reprint": Text("今日还没有可重打的小票", "No receipt to reprint yet today"),
    "home.settings": Text("设置", "Settings"),
    # instruction
    "instr.scan_hint": Text("请用扫码枪扫描患者付款码", "Scan the patient's payment code with the scanner"),
    "instr.camera": Text("摄像头扫码", "Camera scan"),
    "instr.confirm_refund": Text("主管确认退款", "Supervisor PIN"),
    "instr.decline_refund": Text("拒绝退款", "Decline"),
    "instr.items": Text("收费项目", "Items"),
    "instr.item_line": Text("{qty}", "{qty}"),
    "instr.no_items": Text("本单无收费明细", "This bill has no item list"),
    # the payment a refund goes back against
    "orig.title": Text("原支付", "Original payment"),
    "orig.channel": Text("支付方式", "Method"),
    "orig.paid": Text("实付金额", "Paid"),
    "orig.refunded": Text("已退金额", "Refunded already"),
    "orig.remaining": Text("可退金额", "Can be refunded"),
    "orig.unknown": Text("—", "—"),
    "orig.line": Text("原支付 {channel} ¥{paid}，已退 ¥{refunded}，可退 ¥{remaining}",
                      "Paid ¥{paid} by {channel}; refunded ¥{refunded}; ¥{remaining} can be refunded"),
    "orig.not_found": Text("本机没有该订单的支付记录", "No payment of this order on this device"),
    # scan
    "scan.title": Text("扫描付款码", "Scan payment code"),
    "scan.no_camera": Text("未检测到摄像头", "No camera found"),
    "scan.no_camera_hint": Text("请使用扫码枪扫码", "Use the hardware scanner"),
    "scan.no_decoder": Text("摄像头可用，但未安装识码组件", "Camera found, but no code decoder is installed"),
    "scan.live": Text("将付款码对准摄像头", "Hold the payment code to the camera"),
    # paying
    "pay.title": Text("支付中", "Paying"),
    "pay.refund_title": Text("退款中", "Refunding"),
    "pay.countdown": Text("剩余 {seconds} 秒", "{seconds} s left"),
    "pay.cancel": Text("取消并撤销", "Cancel payment"),
    # refund PIN / admin PIN
    "pin.refund_title": Text("退款确认", "Confirm refund"),
    "pin.refund_prompt": Text("请主管输入密码", "Supervisor PIN"),
    "pin.admin_title": Text("管理员验证", "Admin check"),
    "pin.admin_prompt": Text("请输入管理员密码", "Admin PIN"),
    "pin.admin_not_set": Text("本机未设置管理员密码，设置无法打开", "No admin PIN is set on this device, so the settings cannot be opened"),
    "pin.admin_not_set_hint": Text("现场工程师可用 pos-flash provision config --admin-pin 设置",
                                   "A field engineer sets one with pos-flash provision config --admin-pin"),
    "pin.wrong": Text("密码错误，还可再试 {n} 次", "Wrong PIN: {n} tries left"),
    "pin.locked": Text("密码错误次数过多，请 {minutes} 分钟后再试", "Too many wrong PINs: try again in {minutes} min"),
    "pin.checking": Text("正在验证…", "Checking…"),
    "pin.unlock": Text("管理员解除锁定", "Admin: clear the lockout"),
    "pin.unlock_title": Text("解除主管密码锁定", "Clear the PIN lockout"),
    "pin.unlock_prompt": Text("请输入管理员密码以解除锁定", "Admin PIN to clear the supervisor PIN's lockout"),
    "pin.lockout_cleared": Text("已解除锁定，请主管重新输入密码", "Lockout cleared: the supervisor may enter the PIN again"),
    "pin.too_short": Text("密码为 4 至 12 位数字", "A PIN has 4 to 12 digits"),
    # result
    "result.collected": Text("收款成功", "Payment received"),
    "result.refunded": Text("退款成功", "Refund done"),
    "result.not_collected": Text("未收款", "Not paid"),
    "result.not_refunded": Text("未退款", "Not refunded"),
    "result.duplicate": Text("重复订单", "Duplicate order"),
    "result.expired": Text("指令已过期", "Instruction expired"),
    "result.withdrawn": Text("HIS 已撤回指令", "Withdrawn by HIS"),
    "detail.order_no": Text("订单号", "Order"),
    "detail.channel": Text("支付方式", "Payment method"),  # never "paid with": it shows on failures too
    "detail.pay_order_no": Text("交易号", "Transaction"),
    "result.print": Text("打印小票", "Print receipt"),
    "result.printing": Text("正在打印…", "Printing…"),
    "result.printed": Text("小票已发送打印机", "Receipt sent to the printer"),
    "result.saved": Text("未配置打印机，小票图片已保存：\n{path}", "No printer set; the receipt image is saved:\n{path}"),
    "result.print_failed": Text("打印失败：{error}\n小票图片：{path}", "Printing failed: {error}\nReceipt image: {path}"),
    "result.no_receipts_dir": Text("本机未设置小票目录，无法保存小票", "No receipt folder is set on this device: nothing saved"),
    "result.no_receipt": Text("没有可打印的小票", "No receipt to print"),
    # history
    "history.title": Text("今日记录", "Today's list"),
    "history.search": Text("搜索", "Search"),
    "history.hint": Text("输入订单号", "Order number"),
    "history.empty": Text("没有记录", "Nothing found"),
    "history.count": Text("共 {count} 笔", "{count} entries"),
    "status.SUCCESS": Text("已收款", "Paid"),
    "status.FAILED": Text("未收款", "Not paid"),
    "status.CLOSED": Text("已取消", "Cancelled"),
    "status.REFUNDED": Text("已退款", "Refunded"),
    "status.REFUND_FAILED": Text("退款未成功", "Refund failed"),
    # the open "needs a person" cases (issue 17)
    "np.title": Text("待人工处理", "Needs a person"),
    "np.intro": Text("以下交易可能已有资金变动，不能自动完成。按提示在商户平台核实处理后，点\u201c已处理，重新查询\u201d（从最早一笔开始）",
                     "Money may have moved on these, so they cannot finish by themselves. Do what each says on the merchant platform, then press Done: check again (the oldest first)"),
    "np.since": Text("{time} 起", "since {time}"),
    "np.recheck": Text("已处理，重新查询", "Done: check again"),
    # why the POS cannot take payments now
    "problem.title": Text("暂停收费", "Payments paused"),
    "problem.device_disabled": Text("本机已被支付服务商停用", "The payment provider has disabled this device"),
    "problem.gateway_unreachable": Text("无法连接支付网关，暂不能收款", "The payment gateway cannot be reached: no payment can start"),
    "problem.hint.journal": Text("已收款的记录不会丢失；恢复前不能开始新的收费", "Nothing already paid is lost; no new payment starts until it is fixed"),
    "problem.hint.disabled": Text("不能收款或退款。请联系服务商客服，并告知设备号 {device_id}",
                                  "No payment or refund is possible. Call the provider's service desk with device number {device_id}"),
    "problem.hint.network": Text("请检查本机网络（WiFi/4G），恢复后自动继续", "Check this device's network (WiFi/4G); it carries on by itself once it is back"),
    # settings
    "settings.title": Text("设置", "Settings"),
    "settings.language": Text("语言", "Language"),
    "settings.lang.zh": Text("中文", "中文"),
    "settings.lang.en": Text("English", "English"),
    "settings.channel_env": Text("支付环境", "Payment environment"),
    "settings.channel_env_note": Text("由配置镜像决定，请用 pos-flash 更改", "Set by the configuration image; change it with pos-flash"),
    "settings.about": Text("关于本机", "About"),
    "settings.device_id": Text("设备号", "Device ID"),
    "settings.firmware": Text("固件版本", "Firmware"),
    "settings.model": Text("型号", "Model"),
    "settings.serial": Text("序列号", "Serial no."),
    "settings.merchant": Text("商户", "Merchant"),
    "settings.printer": Text("小票打印", "Receipt printer"),
    "settings.printer_none": Text("未配置（仅保存图片）", "Not set (receipts saved as images)"),
    # receipt
    "receipt.title.collect": Text("收款凭条", "PAYMENT RECEIPT"),
    "receipt.title.refund": Text("退款凭条", "REFUND RECEIPT"),
    "receipt.title.failed": Text("交易失败", "NOT PAID"),
    "receipt.title.refund_failed": Text("退款未成功", "NOT REFUNDED"),
    "receipt.not_proof": Text("本单未收款，不作付款凭证", "Nothing was paid: this is not a receipt"),
    "receipt.none_for_failure": Text("未成功的交易没有小票", "A payment that did not go through has no receipt"),
    "receipt.order_no": Text("订单号", "Order"),
    "receipt.pay_order_no": Text("交易号", "Transaction"),
    "receipt.channel": Text("支付方式", "Method"),
    "receipt.status": Text("状态", "Status"),
    "receipt.time": Text("时间", "Time"),
    "receipt.device": Text("设备", "Device"),
    "receipt.patient": Text("患者", "Patient"),
    "receipt.amount": Text("金额", "Amount"),
    "receipt.lookup": Text("扫码查询本笔交易", "Scan to look up this payment"),
    "receipt.keep": Text("请妥善保管", "Please keep this receipt"),
    # what the terminal service says (terminal.view, terminal.service)
    "msg.scan_prompt": Text("请扫描患者的付款码", "Scan the patient's payment code"),
    "msg.refund_prompt": Text("退款需主管输入密码确认", "A supervisor must confirm this refund with the PIN"),
    "msg.queued": Text("排队中，等待上一笔完成", "Waiting for the previous order to finish"),
    "msg.paying": Text("正在支付…", "Paying…"),
    "msg.user_paying": Text("请患者在手机上确认支付", "Ask the patient to confirm the payment on the phone"),
    "msg.confirming": Text("正在向支付渠道确认结果，请稍候", "Confirming the result with the payment channel, please wait"),
    "msg.reversing": Text("正在撤销本笔支付，请稍候", "Cancelling this payment with the channel, please wait"),
    "msg.refunding": Text("正在退款…", "Refunding…"),
    "msg.declined_choice": Text("可请患者换一种付款方式后重新扫码，或取消", "Scan again (the patient may choose another method) or cancel"),
    "msg.busy": Text("正在处理，请稍候", "Working on it, please wait"),
    "msg.nothing_to_scan": Text("当前没有等待扫码的收费", "No collection is waiting for a code"),
    "msg.channel_not_configured": Text("本机未开通该支付方式", "This payment method is not set up on this device"),
    "msg.wrong_pin": Text("密码错误", "Wrong PIN"),
    "msg.pin_locked": Text("密码错误次数过多，请稍后再试", "Too many wrong PINs; try again later"),
    "msg.pin_verified": Text("已验证", "Verified"),
    "msg.expired": Text("该指令已过期，不能再收费或退款", "This instruction has expired: no payment or refund starts now"),
    "msg.nothing_needs_person": Text("没有待人工处理的交易", "Nothing is waiting for a person"),
    "msg.rechecking": Text("正在重新向支付渠道查询…", "Asking the payment channel again…"),
    "msg.waiting_to_reverse": Text("正在撤销本笔支付：微信支付要求付款后至少15秒才能撤销，请稍候",
                                   "Cancelling this payment: WeChat Pay allows it 15 s after the payment at the earliest; please wait"),
    "msg.error": Text("出错：{error}", "Error: {error}"),
    "msg.not_a_payment_code": Text("这不是微信或支付宝付款码", "Not a WeChat Pay or Alipay payment code"),
    "msg.empty_scan": Text("没有读到付款码，请重新扫码", "Nothing was read; scan the code again"),
    "msg.link_qr": Text("这是网址二维码，不是付款码；请患者打开微信或支付宝的付款码",
                        "This is a link QR code, not a payment code; ask the patient to open the WeChat Pay or Alipay payment code"),
    # the journal cannot take new work (issue 14)
    "problem.journal_locked": Text("交易记录损坏，暂停收费。请联系维护人员恢复记录", "Transaction records are damaged: payments are paused. Call IT to restore them"),
    "problem.storage_full": Text("存储空间已满，暂停收费。请联系维护人员", "Storage is full: payments are paused. Call IT"),
    "problem.storage_unavailable": Text("交易记录暂时无法写入，请稍候", "Transaction records cannot be written right now; please wait"),
    # payment channels
    "channel.WECHAT": Text("微信支付", "WeChat Pay"),
    "channel.ALIPAY": Text("支付宝", "Alipay"),
    "channel.UNIONPAY": Text("银联", "UnionPay"),
    # the payment environment (settings)
    "env.none": Text("未配置", "Not configured"),
    "env.sandbox": Text("沙箱（{hosts}）", "Sandbox ({hosts})"),
    "env.production": Text("生产环境", "Production"),
    "env.other": Text("其他（{hosts}）", "Other ({hosts})"),
    # an instruction handed to a person (terminal.machine.NeedsPerson): what happened, what to do
    "needs_person.unverified_reply": Text("需人工处理：支付渠道的应答无法验证（平台证书或支付宝公钥可能配置错误），渠道可能已扣款或退款。请通知服务商核对密钥，并在商户平台核实此笔交易后点下方按钮重新查询",
                                          "Needs a person: the channel's replies cannot be verified (its certificate or public key at the gateway may be wrong); money may have moved. Ask the provider to check the keys, check this transaction on the merchant platform, then press Check again"),
    "needs_person.reverse_failing": Text("需人工处理：多次撤销未成功，患者可能已付款。请在商户平台核实此笔支付（必要时手工撤销或退款）后点下方按钮重新查询",
                                         "Needs a person: the payment could not be cancelled after many tries and may have been taken. Check it on the merchant platform (cancel or refund it there if needed), then press Check again"),
    "needs_person.refund_abnormal": Text("需人工处理：退款异常（患者银行卡已注销或冻结）。请在微信支付商户平台-交易中心手动处理此笔退款后点下方按钮重新查询",
                                         "Needs a person: the refund bounced (the patient's card is closed or frozen). Resolve it by hand on the WeChat Pay merchant platform (Transactions), then press Check again"),
    "needs_person.refund_unconfirmed": Text("需人工处理：多次查询仍无法确认退款结果。请勿重复退款；在商户平台核实此笔退款后点下方按钮重新查询",
                                            "Needs a person: the refund could not be confirmed after many queries. Do not refund again; check it on the merchant platform, then press Check again"),
    "needs_person.other": Text("需人工处理（{code}）", "Needs a person ({code})"),
    # why a collection or refund did not simply succeed, by protocol.messages.ResultCode
    "reason.duplicate_order": Text("该订单已收款或正在其他窗口收款，本次未扣款",
                                   "This order is already paid, or being paid at another window; nothing was charged here"),
    "reason.insufficient_funds": Text("患者余额不足", "The patient's balance is insufficient"),
    "reason.code_invalid": Text("付款码已失效，请患者刷新付款码", "The payment code has expired or was used; ask the patient to refresh it"),
    "reason.declined": Text("支付渠道拒绝了本笔支付", "The payment channel declined this payment"),
    "reason.user_cancelled": Text("患者在手机上取消了支付", "The patient cancelled on the phone"),
    "reason.cancelled": Text("已取消，未扣款", "Cancelled; nothing was charged"),
    "reason.pay_timeout": Text("患者未及时确认，已撤销，未扣款", "The patient did not confirm in time; cancelled, nothing was charged"),
    "reason.channel_error": Text("支付渠道无法确认，已撤销，未扣款", "The channel could not confirm; cancelled, nothing was charged"),
    "reason.order_not_paid": Text("该订单未在本机收款，不能退款", "This order was not paid on this device; it cannot be refunded"),
    "reason.refund_exceeds_remaining": Text("退款金额超过可退余额", "The refund is more than what remains refundable"),
    "reason.supervisor_declined": Text("主管未确认，未退款", "Not confirmed by a supervisor; nothing was refunded"),
    "reason.refund_rejected": Text("支付渠道拒绝了退款", "The payment channel refused the refund"),
    "reason.expired": Text("指令已过期，未收款也未退款", "The instruction expired; nothing was charged or refunded"),
    "reason.withdrawn": Text("HIS已撤回该指令，未收款也未退款", "HIS withdrew this instruction; nothing was charged or refunded"),
    "reason.merchant_config": Text("商户支付配置有误，渠道未受理，未扣款。请联系服务商", "The merchant's payment settings are wrong; the channel did not process it, nothing moved. Call the provider"),
    "reason.refund_window_closed": Text("已超过渠道可退款期限（微信支付：一年），不能原路退款", "Past the channel's refund period (WeChat Pay: one year); it cannot be refunded to the patient's account"),
    "reason.too_many_refunds": Text("该笔支付的部分退款次数已达上限（微信支付：50次）", "This payment has had the most partial refunds the channel allows (WeChat Pay: 50)"),
    "reason.bad_amount": Text("金额超过本院单笔限额，未扣款", "The amount is above the hospital's per-payment limit; nothing was charged"),
    "reason.other": Text("未完成（{code}）", "Not completed ({code})"),
    "result.not_completed": Text("未完成", "Not completed"),
}
# Every entry knows its key: a Text from the service can be traced to its catalogue line.
STRINGS: dict[str, Text] = {key: Text(text.zh, text.en, key) for key, text in _ENTRIES.items()}


def tr(key: str, lang: str = DEFAULT_LANGUAGE, /, **fields: object) -> str:
    """The text for `key` in `lang`, formatted with `fields`. An unknown key is a programming
    error and shows as the key itself in brackets, so a screenshot test catches it."""
    text = STRINGS.get(key)
    if text is None:
        return f"[{key}]"
    template = text.en if lang == "en" else text.zh
    return template.format(**fields) if fields else template


def T(key: str, lang: str = DEFAULT_LANGUAGE, **fields: object) -> str:  # noqa: N802 (the kv-side name)
    return tr(key, lang, **fields)


def text(key: str, /, **fields: object) -> Text:
    """The entry `key` in both languages, formatted with `fields` (a message made at run time)."""
    return Text(tr(key, "zh", **fields), tr(key, "en", **fields), key)


def pick(text: Text | None, lang: str) -> str:
    if text is None:
        return ""
    return text.en if lang == "en" else text.zh


def all_texts() -> list[Text]:
    """Every catalogue entry (the font test renders each of them)."""
    return list(STRINGS.values())


# --- the service's words, by name (each one an entry above) ----------------------------------------

CHANNEL_NAME: dict[PayChannel, Text] = {c: STRINGS[f"channel.{c.name}"] for c in PayChannel if f"channel.{c.name}" in STRINGS}
IDLE = STRINGS["home.idle"]
JOURNAL_LOCKED = STRINGS["problem.journal_locked"]
STORAGE_FULL = STRINGS["problem.storage_full"]
STORAGE_UNAVAILABLE = STRINGS["problem.storage_unavailable"]
SCAN_PROMPT = STRINGS["msg.scan_prompt"]
REFUND_PROMPT = STRINGS["msg.refund_prompt"]
QUEUED = STRINGS["msg.queued"]
PAYING = STRINGS["msg.paying"]
USER_PAYING = STRINGS["msg.user_paying"]
CONFIRMING = STRINGS["msg.confirming"]
REVERSING = STRINGS["msg.reversing"]
REFUNDING = STRINGS["msg.refunding"]
DECLINED_CHOICE = STRINGS["msg.declined_choice"]
BUSY = STRINGS["msg.busy"]
NOTHING_TO_SCAN = STRINGS["msg.nothing_to_scan"]
CHANNEL_NOT_CONFIGURED = STRINGS["msg.channel_not_configured"]
WRONG_PIN = STRINGS["msg.wrong_pin"]
ADMIN_PIN_NOT_SET = STRINGS["pin.admin_not_set"]
EXPIRED = STRINGS["msg.expired"]
PIN_LOCKED = STRINGS["msg.pin_locked"]
PIN_VERIFIED = STRINGS["msg.pin_verified"]
NOTHING_NEEDS_PERSON = STRINGS["msg.nothing_needs_person"]
RECHECKING = STRINGS["msg.rechecking"]
WAITING_TO_REVERSE = STRINGS["msg.waiting_to_reverse"]
RESULT_SUCCESS = STRINGS["result.collected"]
RESULT_REFUNDED = STRINGS["result.refunded"]
NOT_COMPLETED = STRINGS["result.not_completed"]
NEEDS_PERSON: dict[str, Text] = {key.split(".", 1)[1]: t for key, t in STRINGS.items()
                                 if key.startswith("needs_person.") and key != "needs_person.other"}
REASON: dict[ResultCode, Text] = {c: STRINGS[f"reason.{c.value}"] for c in ResultCode if f"reason.{c.value}" in STRINGS}


def needs_person_text(code: str | None) -> Text:
    return NEEDS_PERSON.get(code or "") or text("needs_person.other", code=code)


def reason_text(code: str | None) -> Text | None:
    """The plain-words reason for a result's error_code (None when there is none)."""
    if code is None:
        return None
    try:
        return REASON[ResultCode(code)]
    except (ValueError, KeyError):
        return text("reason.other", code=code)


def declined_text(code: str | None) -> Text:
    """A declined payment: why, and what the cashier can do (scan again or cancel)."""
    reason = reason_text(code) or REASON[ResultCode.DECLINED]
    return Text(f"{reason.zh}。{DECLINED_CHOICE.zh}", f"{reason.en}. {DECLINED_CHOICE.en}", "msg.declined_choice")
