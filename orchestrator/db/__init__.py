"""The database adapter: the only code that runs SQL.

    base.py       declarative base, naming convention, tenant-scoped mixin
    targets.py    the one "route target" column group (kind/ref_id/number/sound)
    models.py     routing tables of a tenant (employees, departments, numbers, ...)
    history.py    call records and voicemail messages
    accounts.py   admin panel accounts (operators, tenant admins)
    versioning.py routing_version / index_version bumping and change publishers
    engine.py     engines and session factories
    migrate.py    Alembic migrations, run programmatically
    snapshot.py   the core's TenantSnapshot / RoutingIndex built from the tables
    queries.py    small lookups and inserts for the call path (SIP users, history)
"""
