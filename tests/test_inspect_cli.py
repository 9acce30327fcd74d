"""``pbx-inspect``: ``--tenant`` by id or SIP domain on every subcommand, members and
departments by extension and name from the tenant's routing data, and one JSON shape
(``{"tenant": ..., "items": [...]}``) everywhere; real Redis and PostgreSQL."""
from __future__ import annotations

import io
import json
from typing import Iterator

import pytest
import redis

from orchestrator.inspect_cli import Directory, main
from orchestrator.member_offers import utc_days
from orchestrator.store.agents import AgentStore, Release
from orchestrator.store.callbacks import CallbackStore
from orchestrator.store.check import redis_now_ms
from orchestrator.store.redis_store import CallStore
from tests.pg_demo import DEMO_DOMAIN, ensure_demo_tenant

SUBCOMMANDS = ["calls", "tenants", "versions", "members", "queues", "callbacks", "keys", "check"]


@pytest.fixture(scope="module")
def demo(pg_server_url: str) -> Iterator[tuple[Directory, int]]:
    from orchestrator.db.engine import make_engine, make_session_factory

    tenant_id = ensure_demo_tenant(pg_server_url)
    engine = make_engine(pg_server_url)
    yield Directory(make_session_factory(engine)), tenant_id
    engine.dispose()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def run(argv: list[str], r: redis.Redis, directory: Directory | None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out, r, directory, err)
    return code, out.getvalue(), err.getvalue()


def ids(directory: Directory, tenant_id: int) -> tuple[dict[str, int], dict[str, int]]:
    snap = directory.resolve(str(tenant_id)).snapshot
    assert snap is not None
    return ({e.extension: e.id for e in snap.employees.values()}, {d.name: d.id for d in snap.departments.values()})


def plant(r: redis.Redis, tenant: int, emp: dict[str, int], dep: dict[str, int]) -> None:
    now = redis_now_ms(r)
    agents = AgentStore(r)
    CallStore(r).admit(tenant, "call-1", now, 0, {"caller": "+78121234567", "destination": "+74950000001", "entry": "public",
                                                  "started_ms": str(now - 65_000)})
    agents.reserve(tenant, "call-1", dep["Sales"], [emp["101"]], 1)
    agents.reserve(tenant, "call-0", dep["Sales"], [emp["102"]], 1)
    agents.release(tenant, "call-0", dep["Sales"], [Release(emp["102"], "answered", 60_000, 30_000)],
                   utc_days(now, 1)[0])
    agents.join_queue(tenant, dep["Support"], "call-2", now - 5000)
    CallbackStore(r).request(tenant, dep["Support"], "call-3", now - 4000, "+78120000000", "+74950000001")


@pytest.mark.parametrize("what", SUBCOMMANDS)
def test_every_subcommand_takes_the_domain_and_prints_one_json_shape(r, demo, what):
    directory, tenant = demo
    emp, dep = ids(directory, tenant)
    plant(r, tenant, emp, dep)
    argv = [what, "--json"] + ([] if what == "tenants" else ["--tenant", DEMO_DOMAIN])
    if what == "check":
        argv += ["--esl", "127.0.0.1:1"]  # nothing listens: Redis-side checks only (exit 3)
    code, out, err = run(argv, r, directory)
    assert code == (3 if what == "check" else 0), err
    doc = json.loads(out)
    assert set(doc) >= {"tenant", "items"} and isinstance(doc["items"], list)
    if what == "tenants":
        assert doc["tenant"] is None and doc["items"] == [{"tenant": tenant, "live_calls": 1}]
    else:
        assert doc["tenant"] == {"id": tenant, "name": "Demo Trading LLC", "sip_domain": DEMO_DOMAIN}
    # The same tenant by id: the same answer.
    if what not in ("tenants", "check"):
        code, by_id, _ = run([what, "--json", "--tenant", str(tenant)], r, directory)
        again = json.loads(by_id)  # times left / waited may tick between the two runs
        assert code == 0 and again["tenant"] == doc["tenant"] and len(again["items"]) == len(doc["items"]) > 0


def test_members_queues_and_callbacks_by_extension_and_name(r, demo):
    directory, tenant = demo
    emp, dep = ids(directory, tenant)
    plant(r, tenant, emp, dep)
    code, out, _ = run(["members", "--tenant", DEMO_DOMAIN.upper(), "--json"], r, directory)
    assert code == 0
    rows = {m["extension"]: m for m in json.loads(out)["items"]}
    # Every department member is listed, with or without state in Redis.
    assert set(rows) >= {"101", "102", "103", "104"}
    assert rows["101"]["name"] == "Ivan Petrov" and rows["101"]["offer"] == "call-1" and rows["101"]["departments"] == ["Sales"]
    assert rows["102"]["calls_today"] == 1 and rows["102"]["talk_s_today"] == 30 and 55_000 < rows["102"]["wrapup_left_ms"] <= 60_000
    assert rows["104"]["offer"] == "" and rows["104"]["employee"] == emp["104"]
    code, text, _ = run(["members", "--tenant", DEMO_DOMAIN], r, directory)
    assert "101 Ivan Petrov" in text and "102 Maria Ivanova" in text and "call-1" in text
    code, text, _ = run(["queues", "--tenant", DEMO_DOMAIN], r, directory)
    assert text.startswith("department %d Support: 2 waiting\n  1. call-2 waiting 5s" % dep["Support"])
    code, out, _ = run(["queues", "--tenant", DEMO_DOMAIN, "--json"], r, directory)
    assert [(q["department_name"], q["place"], q["call"]) for q in json.loads(out)["items"]][0] == ("Support", 1, "call-2")
    code, out, _ = run(["callbacks", "--tenant", DEMO_DOMAIN, "--json"], r, directory)
    (cb,) = json.loads(out)["items"]
    assert (cb["department_name"], cb["caller"], cb["status"]) == ("Support", "+78120000000", "pending")


def test_unknown_or_malformed_tenant_says_what_to_do(r, demo):
    directory, _ = demo
    code, out, err = run(["members", "--tenant", "nobody.example"], r, directory)
    assert (code, out) == (2, "") and "no enabled tenant has SIP domain nobody.example" in err and "pbx-tenant list" in err
    code, out, err = run(["members", "--tenant", "not a domain;"], r, directory)
    assert code == 2 and "neither a tenant id nor a SIP domain" in err
    # Without a database an id still works (no names), a domain cannot be looked up.
    code, out, err = run(["members", "--tenant", DEMO_DOMAIN], r, Directory(None, "database not reachable"))
    assert code == 2 and "cannot look up SIP domain demo.pbx.local: database not reachable" in err and "tenant's id" in err
    code, out, err = run(["members", "--tenant", "1", "--json"], r, Directory(None, "database not reachable"))
    assert code == 0 and json.loads(out)["tenant"] == {"id": 1, "name": None, "sip_domain": None}
    assert "names not shown: database not reachable" in err


def test_redis_unreachable_is_one_clear_line(demo):
    directory, tenant = demo
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    out, err = io.StringIO(), io.StringIO()
    assert main(["members", "--tenant", str(tenant)], out, down, directory, err) == 2
    assert err.getvalue().startswith("pbx-inspect: cannot read Redis") and "REDIS_URL" in err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_fix_is_only_for_check(r, demo):
    directory, tenant = demo
    with pytest.raises(SystemExit) as exit_:
        run(["members", "--tenant", str(tenant), "--fix"], r, directory)
    assert exit_.value.code == 2
