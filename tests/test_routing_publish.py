"""Every writer of routing data publishes its version to Redis, so running orchestrators
route by the new data on their next call.

Seen on a real install: ``pbx-tenant import --replace`` committed without publishing,
and the orchestrators kept their cached snapshot (a member logged out by the re-import
kept ringing). The publisher is now attached where every process builds its database
(``wiring.database``); these tests hold every writer to it.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from orchestrator import wiring
from orchestrator.config import from_env
from orchestrator.db.models import Employee, Tenant
from orchestrator.store.redis_store import routing_version_key
from simulator import Answer, FreeSwitchSim
from test_e2e_calls import CONF, Orchestrator, wait_until

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "publish.pbx.test"
DOC = """\
tenant:
  name: Publish Co
  sip_domain: publish.pbx.test
employees:
  - {name: Anna, extension: "101", logged_in: %(anna)s}
  - {name: Boris, extension: "102"}
departments:
  - name: Support
    extension: "200"
    strategy: ring_all
    ring_seconds: 10
    no_answer_timeout: 10
    members:
      - employee: "101"
      - employee: "102"
numbers:
  - number: "+74957770001"
    mode: always
    work: {department: "200"}
"""


def pbx_tenant(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-c", "import sys; from orchestrator.tenant_cli import main; sys.exit(main())", *args],
                         env=env, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    return out


# Modules that may build a session factory of their own: they never commit.
READ_ONLY = {
    "orchestrator/inspect_tenant.py": "pbx-inspect reads names only (no migrations, nothing written)",
}


def test_every_session_factory_is_built_by_wiring_database() -> None:
    """No product module builds its own session factory: the only one is
    ``wiring.database``, which attaches the version publisher (a writer that built its
    own would commit without publishing, as pbx-tenant did). A module that only reads
    goes into READ_ONLY with the reason; one that writes uses ``wiring.database``."""
    offenders = []
    for base in ("orchestrator", "admin", "workers"):
        for path in (ROOT / base).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ("orchestrator/wiring.py", "orchestrator/db/engine.py") or rel in READ_ONLY:
                continue
            text = path.read_text(encoding="utf-8")
            if re.search(r"\bmake_session_factory\s*\(|\bsessionmaker\s*\(", text):
                offenders.append(rel)
    assert offenders == []


def test_a_database_from_wiring_publishes_every_routing_commit(fresh_pg_url: str, redis_url: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_pg_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PBX_DATA_DIR", str(tmp_path))
    db = wiring.database(from_env(), seed_demo=False)
    assert db.publishes_versions
    from orchestrator.tenant_doc import import_tenant

    with db.session_factory.begin() as s:
        tenant_id = import_tenant(s, DOC % {"anna": "true"})
    r = redis.Redis.from_url(redis_url)
    first = int(r.get(routing_version_key(tenant_id)) or 0)
    assert first > 0
    with db.session_factory.begin() as s:
        s.scalars(select(Employee).where(Employee.tenant_id == tenant_id, Employee.extension == "101")).one().logged_in = False
    assert int(r.get(routing_version_key(tenant_id)) or 0) > first
    db.engine.dispose()
    r.close()


def test_tenant_import_replace_reaches_a_running_orchestrator(fresh_pg_url: str, redis_url: str, tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=fresh_pg_url, REDIS_URL=redis_url, PBX_DATA_DIR=str(tmp_path), PBX_ENV="test")
    doc = tmp_path / "tenant.yaml"
    doc.write_text(DOC % {"anna": "true"})
    pbx_tenant(env, "import", str(doc))
    orch = Orchestrator(fresh_pg_url, redis_url, tmp_path / "orchestrator.log")
    sim = FreeSwitchSim(conf_dir=CONF, globals={"pbx_orchestrator_socket": orch.address, "recordings_dir": "/rec"},
                        time_scale=0.02).start()
    r = redis.Redis.from_url(redis_url)
    try:
        anna = sim.add_user("101", DOMAIN, behavior=Answer(after=2, hangup_after=1))
        boris = sim.add_user("102", DOMAIN, behavior=Answer(after=1, hangup_after=1))
        call = sim.place_call("+74957770001").wait(timeout=30)
        assert len(anna.legs) == 1 and len(boris.legs) == 1 and call.bridged_to  # both rang; Boris answered

        with wiring.database(from_env(env), seed_demo=False).session_factory() as s:
            tenant_id = s.scalars(select(Tenant.id).where(Tenant.sip_domain == DOMAIN)).one()
        before = int(r.get(routing_version_key(tenant_id)) or 0)
        doc.write_text(DOC % {"anna": "false"})  # Anna logs out by a re-import
        out = pbx_tenant(env, "import", "--replace", str(doc))
        assert "replaced tenant %s" % DOMAIN in out.stdout
        assert int(r.get(routing_version_key(tenant_id)) or 0) > before  # published

        call = sim.place_call("+74957770001").wait(timeout=30)
        assert len(boris.legs) == 2 and call.bridged_to
        assert len(anna.legs) == 1  # the running orchestrator routed by the new data
    finally:
        sim.stop()
        orch.stop()
        r.close()
