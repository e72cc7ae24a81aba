"""The payment service provider's back end: the one place that holds merchant keys and enforces the
money rules for every window of every hospital (DESIGN.md, "Keys never live in the client").

    db          storage behind one interface: SQLite (embedded default) and PostgreSQL (production)
    migrations  the one schema, as numbered migrations applied by `Database.migrate()`
    vault       credentials encrypted at rest under the master key
    tenancy     hospitals -> terminals -> devices, merchant credentials, the audit trail
    ledger      the money rules: one order one payment, refunds within what was collected, limits
    admin       the `gateway-admin` CLI (every action audited)
"""
