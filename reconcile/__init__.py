"""T+1 three-way reconciliation: HIS ledger, our bridge journal, and the channels' daily bills.

Run by hospital finance staff (usually as a scheduled job) the morning after a business day. Modules:

- `errors`       the one exception hierarchy, with stable codes and the exit statuses
- `model`        the normalized record (`Entry`), classes of difference, the `Difference` itself
- `fen`          yuan text to integer fen through `protocol.amount.parse_yuan`, memoized per file
- `lines`        a fast, exact CSV line splitter (str.split, with the csv module for quoted lines), and
                 fitting back together bill rows whose unquoted free text held commas
- `attribution`  which bill rows are the POS's trades; the merchant account's other trades
- `his`          the HIS ledger export: neutral CSV format plus a vendor mapping file (TOML)
- `wechat_bill`  WeChat Pay's downloadbill (bill_type=ALL) CSV
- `alipay_bill`  Alipay's trade bill zip (GBK CSVs: 业务明细 and 业务明细(汇总))
- `ours`         read-only adapter over the bridge's journal (the only module that knows its schema)
- `platform`     the platform leg: the gateway's ledger as `gateway-admin ledger export` writes it
- `units`        per-record flags and byte masks shared by the matcher and its conclusions
- `match`        the matcher: business (HIS <-> ours) and funds (ours <-> channel) joins, classes
- `outcome`      concluding a day: second chances, one outcome per record, cross-midnight, totals
- `store`        SQLite: each day's differences, the finance staff's resolutions, what crossed midnight
- `synth`        synthetic days in every source's real format (tests, benchmarks, `reconcile demo`)
- `synth_bulk`   the same bytes for days of millions, written fast (`reconcile demo --transactions N`)
- `report`       the differences CSV and the self-contained HTML report (atomic writes)
- `fetch`        downloading the day's bills through the channel clients
- `run`          one day's reconciliation, end to end (`reconcile_day`)
- `cli`          the `reconcile` command
"""
