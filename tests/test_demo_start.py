"""``pbx-demo`` starts cleanly or not at all: a taken port is named with the variable
that moves it before anything starts; the "running" banner comes only once every
service listens; stopping the demo leaves no child process behind. ``pbx-fssim --help``
lists the phone behaviours. Real subprocesses, real sockets."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from orchestrator.demo import Port, wait_until_listening

ROOT = Path(__file__).resolve().parent.parent
BANNER = "cloud PBX demo running"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listener() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def demo_env(tmp_path: Path, **ports: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PBX_DATA_DIR=str(tmp_path / "var"), PBX_ENV="development",
               PBX_LISTEN="127.0.0.1:%d" % ports.get("listen", free_port()),
               PBX_ADMIN_LISTEN="127.0.0.1:%d" % ports.get("admin", free_port()),
               PBX_DIRECTORY_LISTEN="127.0.0.1:%d" % ports.get("directory", free_port()),
               PBX_ESL_ADDRESS="127.0.0.1:%d" % ports.get("esl", free_port()),  # no FreeSWITCH there
               PYTHONUNBUFFERED="1")
    env.pop("PBX_METRICS_LISTEN", None)
    return env


@pytest.mark.parametrize("which,variable", [("admin", "PBX_ADMIN_LISTEN"), ("listen", "PBX_LISTEN"),
                                            ("directory", "PBX_DIRECTORY_LISTEN")])
def test_a_taken_port_is_named_with_its_variable_and_nothing_starts(tmp_path: Path, listener: int, which: str,
                                                                    variable: str) -> None:
    env = demo_env(tmp_path, **{which: listener})
    done = subprocess.run([sys.executable, "-m", "orchestrator.demo"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "127.0.0.1:%d" % listener in done.stderr and "is taken" in done.stderr
    assert "%s=127.0.0.1:" % variable in done.stderr
    assert BANNER not in done.stdout
    assert not (tmp_path / "var").exists()  # nothing was started, not even the database


def test_the_simulators_event_socket_port_is_checked_too(tmp_path: Path, listener: int) -> None:
    env = demo_env(tmp_path, esl=listener)
    done = subprocess.run([sys.executable, "-m", "orchestrator.demo", "--simulate-call", "+74950000001"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "PBX_ESL_ADDRESS=127.0.0.1:" in done.stderr


def processes_with(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (the demo's children and theirs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def test_banner_once_everything_listens_and_no_orphan_after_stop(tmp_path: Path) -> None:
    ports = {"listen": free_port(), "admin": free_port(), "directory": free_port()}
    env = demo_env(tmp_path, **ports)
    marker = "PBX_DATA_DIR=%s" % env["PBX_DATA_DIR"]
    demo = subprocess.Popen([sys.executable, "-m", "orchestrator.demo", "--start-timeout", "240"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:  # ends when the demo exits: no wait without an end
            lines.append(line)
            if BANNER in line:
                break
        assert any(BANNER in line for line in lines), "".join(lines) + (
            demo.stderr.read() if demo.poll() is not None and demo.stderr is not None else "")
        for port in ports.values():  # every service already listens when the banner is printed
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert processes_with(marker)  # the children run
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=180) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=30)
    assert processes_with(marker) == []  # no orphan keeps a port
    for port in ports.values():
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_child_that_exits_while_starting_is_reported() -> None:
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    try:
        child.wait(timeout=60)
        problem = wait_until_listening([Port("admin panel", "127.0.0.1", free_port(), "PBX_ADMIN_LISTEN")],
                                       {"admin": child}, timeout_s=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert problem == "admin exited with status 3 while starting"


def test_fssim_help_lists_the_phone_behaviours() -> None:
    done = subprocess.run([sys.executable, "-m", "simulator.cli", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    for behaviour in ("answer[:AFTER[:TALK]]", "busy[:AFTER]", "reject:CAUSE[:AFTER]", "noanswer"):
        assert behaviour in done.stdout
