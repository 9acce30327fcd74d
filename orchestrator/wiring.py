"""The one place that builds clients (database engine, Redis, ESL) and hands them in.

Entry points call ``build(settings)``; no other module creates its own connection.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from orchestrator.config import Settings
from orchestrator.core.plan import Policy
from orchestrator.store.agents import AgentStore
from orchestrator.store.redis_store import CallStore, RoutingVersions
from orchestrator.store.routing_cache import RoutingCache

log = logging.getLogger(__name__)
T = TypeVar("T")

DEMO_TENANT_FILE = Path(__file__).resolve().parent / "demo" / "demo-tenant.yaml"


DB_POOL_SIZE = 10


def run_in_threadpool(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking database work off the gevent hub (psycopg2 and sqlite3 block).

    An exception of ``fn`` is raised here, in the caller, and only here: gevent's thread
    pool also hands an exception raised in its thread to the hub's ``handle_error``,
    which prints a traceback to stderr, so an expected failure (the database down while
    the history writer retries) printed one traceback per retry. The exception is
    caught in the thread and re-raised in the caller instead."""
    import gevent

    ok, value = gevent.get_hub().threadpool.apply(_capture, (fn, args))
    if not ok:
        raise value
    return value


def _capture(fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except Exception as exc:  # noqa: BLE001 - handed to the caller as it is
        return False, exc


def spawn_background(fn: Callable[[], None]) -> None:
    """Run ``fn`` in its own greenlet (it must log its own errors)."""
    import gevent

    gevent.spawn(fn)


# One connection per greenlet waiting on Redis: every live call may be in a Redis call at
# once. redis-py's default pool raises "Too many connections" past its cap; a blocking
# pool makes a greenlet wait (up to 2 s) for a free connection instead.
REDIS_MAX_CONNECTIONS = 512


def redis_client(url: str) -> redis.Redis:
    """A Redis client that rides out a restart: short timeouts, a few quick retries."""
    from redis.connection import BlockingConnectionPool

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=2,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    return redis.Redis(connection_pool=pool)


def resolve_redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    from orchestrator.store.embedded_redis import embedded_redis_url

    return embedded_redis_url(settings.data_dir)


def policy_from(settings: Settings) -> Policy:
    """System sounds keep the Policy defaults (FreeSWITCH's stock sound names)."""
    return Policy(external_dial_template=settings.external_dial_template, recordings_dir=settings.recordings_dir)


@dataclass
class Database:
    engine: Any
    session_factory: Any
    publishes_versions: bool = False  # attach_version_publisher ran (once per Database)


def database(settings: Settings, *, seed_demo: bool | None = None, redis_client_: redis.Redis | None = None) -> Database:
    """Engine + migrations; the embedded SQLite database gets the demo tenant once.

    Every commit that changes routing data through this database publishes the new
    versions to Redis (``attach_version_publisher``), whoever commits: the orchestrator,
    the admin panel, ``pbx-tenant import``, a worker. Building the database here is
    the only way in, so no writer can forget to publish. ``redis_client_``: the
    process's client; without it one is made for ``settings`` (REDIS_URL, else the
    embedded Redis) at the first publish, so read-only users never connect."""
    from orchestrator.db.engine import make_engine, make_session_factory
    from orchestrator.db.migrate import upgrade

    url = settings.effective_database_url
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    # As many pooled connections as the gevent thread pool has threads (10 by default):
    # with fewer, every write past the pool opened and closed a connection of its own
    # (the department benchmark counted 230 new PostgreSQL connections at 150 calls/s).
    engine = make_engine(url, pool_size=DB_POOL_SIZE, max_overflow=5)
    upgrade(engine)
    factory = make_session_factory(engine)
    if seed_demo is None:
        seed_demo = not settings.database_url
    db = Database(engine, factory)
    if redis_client_ is not None:
        attach_version_publisher(db, RoutingVersions(redis_client_))
    else:
        attach_version_publisher(db, _lazy_versions(settings))
    if seed_demo:
        seed_demo_tenant(factory)
    return db


def _lazy_versions(settings: Settings) -> Callable[[], RoutingVersions]:
    """The settings' Redis, connected at the first call (the first routing change)."""
    made: list[RoutingVersions] = []

    def get() -> RoutingVersions:
        if not made:
            made.append(RoutingVersions(redis_client(resolve_redis_url(settings))))
        return made[0]

    return get


def seed_demo_tenant(session_factory: Any) -> None:
    from sqlalchemy import func, select

    from orchestrator.db.models import Tenant
    from orchestrator.tenant_doc import import_tenant

    with session_factory() as session:
        if session.scalar(select(func.count()).select_from(Tenant)):
            return
        import_tenant(session, DEMO_TENANT_FILE.read_text(encoding="utf-8"))
        session.commit()
        log.info("seeded the demo tenant from %s", DEMO_TENANT_FILE)


@dataclass
class Orchestrator:
    settings: Settings
    db: Database
    redis: redis.Redis
    cache: RoutingCache
    calls: CallStore
    policy: Policy
    agents: AgentStore


def orchestrator(settings: Settings, *, run_blocking: Callable[..., Any] = run_in_threadpool) -> Orchestrator:
    from orchestrator.db.snapshot import load_routing_index, load_tenant_snapshot

    client = redis_client(resolve_redis_url(settings))
    db = database(settings, redis_client_=client)  # publishes routing versions on this client
    versions = RoutingVersions(client)

    def load_index() -> Any:
        with db.session_factory() as session:
            return load_routing_index(session)

    def load_snapshot(tenant_id: int) -> Any:
        with db.session_factory() as session:
            return load_tenant_snapshot(session, tenant_id)

    cache = RoutingCache(versions, load_index, load_snapshot, run_blocking, settings.snapshot_cache_size)
    calls = CallStore(client)
    return Orchestrator(settings, db, client, cache, calls, policy_from(settings), AgentStore(client))


def attach_version_publisher(db: Database, versions: RoutingVersions | Callable[[], RoutingVersions]) -> None:
    """After every commit that changed routing data, publish the new versions.

    ``database()`` already does this for every Database it builds; a second call on the
    same Database does nothing (publishing twice would be harmless, the versions only go
    up, but is wasted work)."""
    from orchestrator.db.engine import add_change_publisher

    if db.publishes_versions:
        return
    db.publishes_versions = True

    def publish(changed: dict[int, int], index_version: int | None) -> None:
        try:
            target = versions if isinstance(versions, RoutingVersions) else versions()
            target.publish(changed, index_version)
        except (redis.RedisError, OSError) as exc:
            # The orchestrators then keep their cached snapshot until the next change
            # or until Redis is back and the version is seeded again.
            log.error("routing data committed, but its versions %s were not published to Redis (%s): running "
                      "orchestrators keep the old routing until the next published change; once Redis answers, "
                      "save the change again (or any change of the tenant)", changed, exc)

    add_change_publisher(db.session_factory, publish)


def attach_directory_cache_flush(db: Database, settings: Settings,
                                 spawn: Callable[[Callable[[], None]], None] = spawn_background) -> None:
    """After every commit that changed routing data, clear FreeSWITCH's directory cache.

    The directory answers users with ``cacheable`` (admin/directory.py), so FreeSWITCH
    keeps each user's entry - SIP password included - for minutes
    (switch_xml.c ``switch_xml_locate_user_merged``' user cache). A changed password, a
    removed employee or a suspended tenant must not keep registering until then: every
    FreeSWITCH this deployment talks to (``PBX_ESL_ADDRESS`` and ``PBX_PRESENCE_ESL``)
    gets ``api xml_flush_cache`` (no argument: the whole cache; mod_commands
    ``xml_flush_function`` answers ``+OK cleared N entries``). Changes are rare (an admin
    saving), the cache refills at the next lookup. Runs off the request (``spawn``); a
    FreeSWITCH that cannot be reached is logged (its entries then expire by themselves)."""
    from orchestrator.db.engine import add_change_publisher
    from orchestrator.esl.inbound import InboundClient

    servers = list(dict.fromkeys([(settings.esl_host, settings.esl_port), *settings.presence_esl]))

    def flush_all() -> None:
        for host, port in servers:
            try:
                client = InboundClient(host, port, settings.esl_password, reconnect=False, connect_timeout=2.0,
                                       command_timeout=2.0).connect()
                try:
                    answer = client.api("xml_flush_cache").strip()
                finally:
                    client.close()
                log.info("FreeSWITCH %s:%d directory cache flushed after a routing change (%s)", host, port, answer)
            except Exception as exc:  # noqa: BLE001 - best effort; logged, entries expire by themselves
                log.warning("FreeSWITCH %s:%d directory cache not flushed after a routing change (%s): changed SIP "
                            "passwords and removed employees take effect when its cached entries expire (5 min), "
                            "or run: fs_cli -x 'xml_flush_cache'", host, port, exc)

    def on_change(changed: dict[int, int], index_version: int | None) -> None:
        if changed or index_version is not None:
            spawn(flush_all)

    add_change_publisher(db.session_factory, on_change)


VOICEMAIL_MAIL_JOB = "workers.mail.send_voicemail"


FAX_MAIL_JOB = "workers.mail.send_fax"


def _mail_notifier(settings: Settings, client: redis.Redis, job: str, what: str) -> Callable[[int, int], None] | None:
    """An ``on_<what>`` hook of ``DbRecorder``: enqueue ``job`` (tenant id, row id) on
    ``pbx-default``. None (and one log line) when PBX_SMTP_HOST is empty: e-mail is off.
    A Redis failure while enqueuing is logged; the row stays stored, the call goes on."""
    from rq import Queue, Retry

    from workers import DEFAULT_QUEUE, SERIALIZER

    if not settings.smtp_host:
        log.info("%s e-mail is off: PBX_SMTP_HOST is empty", what)
        return None
    queue = Queue(DEFAULT_QUEUE, connection=client, serializer=SERIALIZER)  # JSON, as pbx-worker reads it

    def enqueue(tenant_id: int, row_id: int) -> None:
        try:
            queue.enqueue(
                job, tenant_id, row_id,
                job_timeout=120, retry=Retry(max=3, interval=[30, 120, 600]),
                description="e-mail %s %d of tenant %d" % (what, row_id, tenant_id),
            )
        except redis.RedisError as exc:
            log.error("tenant %d: %s %d stored but its e-mail was not queued (Redis: %s)", tenant_id, what, row_id, exc)

    return enqueue


def voicemail_notifier(settings: Settings, client: redis.Redis) -> Callable[[int, int], None] | None:
    """``DbRecorder``'s ``on_voicemail``: the voicemail e-mail job."""
    return _mail_notifier(settings, client, VOICEMAIL_MAIL_JOB, "voicemail")


def fax_notifier(settings: Settings, client: redis.Redis) -> Callable[[int, int], None] | None:
    """``DbRecorder``'s ``on_fax``: the fax e-mail job."""
    return _mail_notifier(settings, client, FAX_MAIL_JOB, "fax")


def history_writer(db: Database, *, max_delay_s: float, run_blocking: Callable[..., Any] = run_in_threadpool) -> Any:
    """The batching writer of finished calls' history rows (``DbRecorder``'s)."""
    from orchestrator.history_writer import HistoryWriter

    return HistoryWriter(db.session_factory, run_blocking, max_delay_s=max_delay_s)


def caller_lookups(db: Database, *, allow_private: bool = False, run_blocking: Callable[..., Any] = run_in_threadpool) -> Any:
    """The caller rules' lookups: call history from the database, CRMs over HTTP (only
    public addresses unless ``allow_private``: PBX_CRM_ALLOW_PRIVATE)."""
    import time

    from orchestrator.caller_lookups import CallerLookups
    from orchestrator.crm import CrmClient
    from orchestrator.db_recorder import DbHistory

    return CallerLookups(DbHistory(db.session_factory, run_blocking), CrmClient(allow_private=allow_private), lambda: int(time.time() * 1000))
