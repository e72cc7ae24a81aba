"""Every string the POS screens show, in Chinese (first) and English: the one catalogue.

The .kv files never hold text: they call `T("key", lang)` (imported as `T`), and Python code calls
`tr()`. Messages that come from the terminal service arrive as `terminal.texts.Text` and are
picked with `pick()`. Formatted entries use `str.format` fields, named so a translator sees what
goes where. Changing the language at runtime re-evaluates every binding that passes `lang`.
"""

from __future__ import annotations

from terminal.texts import Text

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"

STRINGS: dict[str, Text] = {
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
    "home.net.ok": Text("网络正常", "Network OK"),
    "home.net.down": Text("网络异常", "Network down"),
    "home.net.unknown": Text("网络未检测", "Network not checked"),
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
    "pay.needs_person_title": Text("需人工处理", "Needs a person"),
    "pay.recheck": Text("已处理，重新查询", "Done: check again"),
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
    "pin.too_short": Text("密码为 4 至 12 位数字", "A PIN has 4 to 12 digits"),
    # result
    "result.collected": Text("收款成功", "Payment received"),
    "result.refunded": Text("退款成功", "Refund done"),
    "result.not_collected": Text("未收款", "Not paid"),
    "result.not_refunded": Text("未退款", "Not refunded"),
    "result.duplicate": Text("重复订单", "Already paid"),
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
}


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


def pick(text: Text | None, lang: str) -> str:
    if text is None:
        return ""
    return text.en if lang == "en" else text.zh


def all_texts() -> list[Text]:
    """Every catalogue entry (the font test renders each of them)."""
    return list(STRINGS.values())
