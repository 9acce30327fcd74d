"""The real-FreeSWITCH tier: a private FreeSWITCH with our overlay (installed by
``pbx-fs-install``), our real processes (pbx-orchestrator, pbx-admin for the SIP
directory) on real PostgreSQL and Redis, sipp phones that register with the employees'
exported credentials, and a sipp carrier that places calls into context ``public``.

Skipped, saying why, without a FreeSWITCH (``FS_PREFIX``: an install prefix; default
/opt/freeswitch when present, else /usr for the Debian packages) or without sipp.
Every test of this folder carries the ``realfs`` marker. Everything of a run lives in
one /tmp/pbx-realfs-* folder, removed at the end; ``PBX_REALFS_KEEP=1`` keeps it (logs of
FreeSWITCH, the orchestrator, the admin app, the worker and every sipp).

Run alone: ``PBX_TEST_REDIS_URL=redis://127.0.0.1:6379/8 python -m pytest tests/realfs -q``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from tests.realfs.fs_harness import EslEvents, PrivateFreeSwitch, find_prefix, free_port, free_udp_port, wait_until
from tests.realfs.sipp import Sipp, carrier_scenario, register_scenario, uas_scenario, write_tone

HERE = Path(__file__).resolve().parent
DOMAIN = "realfs.pbx.test"
CARRIER_IP = "127.0.0.2"  # the pbx_carriers ACL allows it: INVITEs from it are not challenged


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.fspath).startswith(str(HERE)):
            item.add_marker(pytest.mark.realfs)


@pytest.fixture(scope="session")
def fs_prefix() -> Path:
    prefix, why = find_prefix()
    if prefix is None:
        pytest.skip("real-FreeSWITCH tier skipped: " + why)
    return prefix


class Process:
    """A product process (python -c entry point) with its log file."""

    def __init__(self, name: str, entry: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.log_path = workdir / ("%s.log" % name)
        self.proc = subprocess.Popen([sys.executable, "-c", entry] + args, env=env, stdout=subprocess.PIPE,
                                     stderr=open(self.log_path, "wb"), stdin=subprocess.PIPE, text=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def read_line_containing(self, text: str, timeout: float) -> str:
        import threading

        found: list[str] = []

        def reader() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if text in line:
                    found.append(line)
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if not found:
            raise AssertionError("no %r from the process within %.0f s; log: %s" % (text, timeout, self.log()[-3000:]))
        return found[0]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class Stack:
    fs: PrivateFreeSwitch
    esl: EslEvents
    orchestrator: Process
    admin: Process
    workdir: Path
    db_url: str
    redis_url: str
    env: dict[str, str]
    passwords: dict[str, str]
    mobile_port: int
    session_factory: object = None
    inbox: Inbox | None = None
    extra: list[Process] = field(default_factory=list)

    def start_orchestrator(self) -> Process:
        port = self.orchestrator_port
        proc = Process("orchestrator-%d" % len(self.extra), "import sys; from orchestrator.cli import orchestrator_main; "
                       "sys.exit(orchestrator_main())", ["--listen", "127.0.0.1:%d" % port], self.env, self.workdir)
        proc.read_line_containing("listening on", 90)
        self.extra.append(proc)
        self.orchestrator = proc
        return proc

    orchestrator_port: int = 0


def _directory_answers(url: str, credentials: str) -> bool:
    req = urllib.request.Request(url, data=b"section=directory&domain=" + DOMAIN.encode(), method="POST",
                                 headers={"Authorization": "Basic " + b64encode(credentials.encode()).decode()})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Inbox:
    """An aiosmtpd handler keeping every message (mail from, recipients, raw bytes)."""

    def __init__(self) -> None:
        import threading

        self.received: list[tuple[str, list[str], bytes]] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001 - aiosmtpd's hook
        with self.cond:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content))
            self.cond.notify_all()
        return "250 OK"

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


@pytest.fixture(scope="session")
def smtp_inbox(fs_prefix: Path) -> Iterator[tuple[Inbox, int]]:
    from aiosmtpd.controller import Controller

    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def realfs_db_url() -> Iterator[str]:
    """A database of the tier's own: its processes live for the whole test session, and
    its tenant (numbers included) must not meet the other tests' tenants."""
    from tests.conftest import _new_database

    with _new_database("pbx_realfs") as url:
        yield url


def realfs_redis_url() -> str:
    """A Redis database of the tier's own ($PBX_TEST_REALFS_REDIS_URL, else db 12 of the
    test Redis): its pbx-worker, alive for the whole session, must not take the jobs of
    other tests (db 15, flushed around each of them)."""
    from tests.conftest import REDIS_URL

    return os.environ.get("PBX_TEST_REALFS_REDIS_URL") or REDIS_URL.rsplit("/", 1)[0] + "/12"


@pytest.fixture(scope="session")
def realfs_stack(fs_prefix: Path, realfs_db_url: str, smtp_inbox: tuple[Inbox, int]) -> Iterator[Stack]:
    import redis
    from sqlalchemy import select

    from orchestrator.db.engine import make_engine, make_session_factory
    from orchestrator.db.migrate import upgrade
    from orchestrator.db.models import Tenant
    from orchestrator.tenant_doc import import_tenant

    pg_server_url = realfs_db_url
    REDIS_URL = realfs_redis_url()

    # Own folder, not pytest's rotating basetemp: another pytest session on this machine
    # must not remove FreeSWITCH's folders under it. Kept with PBX_REALFS_KEEP=1.
    import shutil
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="pbx-realfs-"))
    engine = make_engine(pg_server_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        if session.scalar(select(Tenant.id).where(Tenant.sip_domain == DOMAIN)) is None:
            import_tenant(session, (HERE / "tenant.yaml").read_text(encoding="utf-8"))
            session.commit()
    redis.Redis.from_url(REDIS_URL).flushdb()

    fs = PrivateFreeSwitch(fs_prefix, workdir / "fs")
    fs.workdir.mkdir()
    orchestrator_port = free_port()
    admin_port, directory_port = free_port(), free_port()
    mobile_port = free_udp_port()
    directory_password = "dir-%s" % os.urandom(8).hex()
    directory_url = "http://127.0.0.1:%d/freeswitch/directory" % directory_port
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.update(
        DATABASE_URL=pg_server_url, REDIS_URL=REDIS_URL, PBX_ENV="test", PBX_DATA_DIR=str(workdir),
        PBX_ESL_ADDRESS="127.0.0.1:%d" % fs.esl_port, PBX_ESL_PASSWORD=fs.esl_password,
        PBX_RECORDINGS_DIR=str(fs.recordings / "pbx"),
        PBX_EXTERNAL_DIAL_TEMPLATE="sofia/pbx/{number}@127.0.0.1:%d" % mobile_port,
        PBX_ADMIN_LISTEN="127.0.0.1:%d" % admin_port, PBX_DIRECTORY_LISTEN="127.0.0.1:%d" % directory_port,
        PBX_DIRECTORY_USER="freeswitch", PBX_DIRECTORY_PASSWORD=directory_password,
        PBX_SMTP_HOST="127.0.0.1", PBX_SMTP_PORT=str(smtp_inbox[1]), PBX_SMTP_FROM="PBX <voicemail@realfs.example>",
    )
    # PBX_RECORDINGS_DIR: voicemail is written there under flat names; FreeSWITCH's
    # record creates no folder, so the install (here: the test) creates it.
    (fs.recordings / "pbx").mkdir(parents=True)
    fs.install("127.0.0.1:%d" % orchestrator_port, directory_url, "freeswitch:" + directory_password, [CARRIER_IP + "/32"])

    exported = subprocess.run([sys.executable, "-c", "import sys; from orchestrator.tenant_cli import main; sys.exit(main())",
                               "export", DOMAIN, "--with-secrets"], env=env, capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    passwords = {str(e["extension"]): e["sip_password"] for e in yaml.safe_load(exported.stdout)["employees"]}

    admin = Process("admin", "import sys; from admin.cli import main; sys.exit(main())", [], env, workdir)
    orch = Process("orchestrator", "import sys; from orchestrator.cli import orchestrator_main; sys.exit(orchestrator_main())",
                   ["--listen", "127.0.0.1:%d" % orchestrator_port], env, workdir)
    worker = Process("worker", "import sys; from workers.cli import main; sys.exit(main())", [], env, workdir)
    stack: Stack | None = None
    esl: EslEvents | None = None
    try:
        orch.read_line_containing("listening on", 90)
        wait_until(lambda: _directory_answers(directory_url, "freeswitch:" + directory_password), 90,
                   "the admin app's directory at %s (log %s)" % (directory_url, admin.log_path), step=0.2)
        esl = fs.start()
        stack = Stack(fs, esl, orch, admin, workdir, pg_server_url, REDIS_URL, env, passwords, mobile_port,
                      session_factory=factory, orchestrator_port=orchestrator_port, inbox=smtp_inbox[0])
        yield stack
    finally:
        if esl is not None:
            esl.close()
        fs.stop()
        for proc in [orch, admin, worker] + (stack.extra if stack else []):
            proc.stop()
        engine.dispose()
        if os.environ.get("PBX_REALFS_KEEP") == "1":
            print("realfs: FreeSWITCH, orchestrator and sipp logs kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Phone:
    extension: str
    port: int
    uas: Sipp


@pytest.fixture
def phones(realfs_stack: Stack) -> Iterator[Callable[..., Phone]]:
    """``phones("102", answer_after_ms=1000)``: a registered phone of that employee
    (``answer_after_ms=None``: rings until cancelled; ``busy=True``: 486 Busy Here)."""
    stack = realfs_stack
    started: list[Sipp] = []
    workdir = stack.workdir / "phones"
    workdir.mkdir(exist_ok=True)
    remote = "127.0.0.1:%d" % stack.fs.sip_port

    made: list[Phone] = []

    def register(extension: str, port: int, expires: int) -> None:
        name = "phone-%s-%d-%s" % (extension, port, "reg" if expires else "unreg")
        reg = Sipp(workdir, name, register_scenario(extension, DOMAIN, stack.passwords[extension], port, expires),
                   remote, "127.0.0.1", free_udp_port(), calls=1, timeout_s=60)
        started.append(reg)
        status = reg.wait(timeout=90)
        assert status == 0, "phone %s: REGISTER (Expires %d) failed (sipp status %s): %s" % (
            extension, expires, status, reg.log.read_text(errors="replace")[-2000:])

    def make(extension: str, answer_after_ms: int | None, busy: bool = False) -> Phone:
        port = free_udp_port()
        uas = Sipp(workdir, "phone-%s-%d" % (extension, port), uas_scenario(answer_after_ms, busy), remote, "127.0.0.1",
                   port, calls=None)
        started.append(uas)
        register(extension, port, 3600)
        made.append(Phone(extension, port, uas))
        return made[-1]

    stack.esl.clear()
    yield make
    # Unregister (Expires: 0 for this Contact), so that the next test's phones of the
    # same employee are the only contacts (multiple-registrations=contact).
    for phone in made:
        register(phone.extension, phone.port, 0)
    for proc in started:
        proc.stop()


@pytest.fixture
def mobile(realfs_stack: Stack) -> Iterator[Callable[[int | None], Sipp]]:
    """The "mobile" network: a sipp UAS at the address PBX_EXTERNAL_DIAL_TEMPLATE dials."""
    started: list[Sipp] = []
    workdir = realfs_stack.workdir / "phones"
    workdir.mkdir(exist_ok=True)

    def make(answer_after_ms: int | None) -> Sipp:
        uas = Sipp(workdir, "mobile-%d" % len(started), uas_scenario(answer_after_ms),
                   "127.0.0.1:%d" % realfs_stack.fs.sip_port, "127.0.0.1", realfs_stack.mobile_port, calls=None)
        started.append(uas)
        return uas

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def carrier(realfs_stack: Stack) -> Iterator[Callable[..., Sipp]]:
    """``carrier("+74951110001", hold_ms=2000)``: a carrier's call into context public
    (``hold_ms=None``: it stays until FreeSWITCH hangs up)."""
    started: list[Sipp] = []
    workdir = realfs_stack.workdir / "carrier"
    workdir.mkdir(exist_ok=True)

    def call(number: str, hold_ms: int | None, caller: str = "+78121234567", dtmf: str = "", dtmf_after_ms: int = 0,
             speak: bool = False) -> Sipp:
        audio = write_tone(workdir / "tone.ulaw") if speak else None
        sipp = Sipp(workdir, "carrier-%d" % len(started),
                    carrier_scenario(number, caller, realfs_stack.fs.sip_port, hold_ms, dtmf, dtmf_after_ms, audio),
                    "127.0.0.1:%d" % realfs_stack.fs.sip_port, CARRIER_IP, free_udp_port(CARRIER_IP), calls=1)
        started.append(sipp)
        return sipp

    yield call
    for proc in started:
        proc.stop()
