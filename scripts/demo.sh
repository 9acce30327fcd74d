#!/usr/bin/env bash
# Run the product on embedded defaults: no root, no database or Redis server needed.
# Creates .venv, installs the product, then runs `pbx-demo` (orchestrator + admin panel +
# callback worker on a SQLite file with the demo tenant and an embedded Redis, in var/).
# Arguments go to pbx-demo (e.g. scripts/demo.sh --simulate-call +74950000001).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec pbx-demo "$@"
