"""The call-flow core stays pure: no I/O libraries, and mypy --strict clean."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "orchestrator" / "core"
FORBIDDEN = {"gevent", "redis", "greenswitch", "sqlalchemy", "flask", "flask_admin", "psycopg2", "socket", "rq", "requests", "time"}


def test_core_imports_no_io_library():
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += ["%s imports %s" % (path.name, n) for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_core_is_mypy_strict_clean():
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(CORE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
