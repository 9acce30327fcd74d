"""FreeSWITCH XML configuration: the preprocessor and the XML dialplan (mod_dialplan_xml).

Behaviour relied on:

* Preprocessor (switch_xml.c, preprocess()): files are read line by line; ``$${name}``
  global variables are expanded in the whole line first; then one instruction per line
  is run: ``<X-PRE-PROCESS cmd="set" data="name=value"/>`` (spaces around ``=``
  trimmed), ``cmd="env-set" data="name=$ENV"`` (copies the environment variable, does
  nothing when it is unset), ``cmd="exec-set" data="name=command"`` (stdout of the
  command, trailing newline removed), ``cmd="include" data="glob"``. 1.10 also has
  ``stun-set`` (not supported here: logged and ignored).
* Dialplan hunt (mod_dialplan_xml.c, dialplan_hunt/parse_exten): the first
  ``<context name=...>`` with the channel's context; extensions in order; conditions in
  order. A condition with ``field`` and ``expression`` matches the field by regex
  (captures ``$1``.. go into that condition's action data); ``field="${var}"`` is
  expanded first; a condition without field is true. True -> its ``<action>``s, false ->
  its ``<anti-action>``s. ``break``: on-false (default) stops at a false condition,
  on-true at a true one, always / never. An extension whose last evaluated condition is
  true ends the hunt unless ``continue="true"``. Anti-actions of a failing extension are
  still collected (FreeSWITCH adds them to the call's extension). ``inline="true"``
  actions run during the hunt. ``${var}`` in action data is expanded when the action
  executes.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from simulator.channel import Channel

log = logging.getLogger(__name__)

_GLOBAL_RE = re.compile(r"\$\$\{([^{}]+)\}")
_PRE_RE = re.compile(r'<X-PRE-PROCESS\s+cmd="([^"]*)"\s+data="([^"]*)"\s*/>', re.IGNORECASE)

# Stock globals that vars.xml of a vanilla 1.10 install defines before any include.
STOCK_GLOBALS = {
    "base_dir": "/usr/local/freeswitch", "sounds_dir": "/usr/local/freeswitch/sounds",
    "recordings_dir": "/usr/local/freeswitch/recordings", "conf_dir": "/usr/local/freeswitch/conf",
    "local_ip_v4": "127.0.0.1", "domain": "127.0.0.1", "domain_name": "127.0.0.1",
    "hold_music": "local_stream://moh", "default_password": "1234", "sound_prefix": "/usr/local/freeswitch/sounds/en/us/callie",
    "console_loglevel": "info", "outbound_caller_id": "0000000000", "internal_sip_port": "5060",
}

PROFILE_FIELDS = {"destination_number", "caller_id_number", "caller_id_name", "context", "network_addr",
                  "ani", "rdnis", "source", "chan_name", "uuid", "dialplan", "username", "aniii"}


@dataclass
class Action:
    app: str
    data: str
    inline: bool = False


@dataclass
class Condition:
    field_name: str | None
    expression: str | None
    brk: str
    actions: list[Action] = field(default_factory=list)
    anti_actions: list[Action] = field(default_factory=list)


@dataclass
class Extension:
    name: str
    cont: bool
    conditions: list[Condition]


@dataclass
class Dialplan:
    contexts: dict[str, list[Extension]] = field(default_factory=dict)

    def add_xml(self, root: ET.Element) -> None:
        for ctx in root.iter("context"):
            name = ctx.get("name", "")
            if name in self.contexts:  # the FIRST context of a name wins (mod_dialplan_xml)
                continue
            self.contexts[name] = [_extension(x) for x in ctx.findall("extension")]


def _extension(x: ET.Element) -> Extension:
    conds = []
    for c in x.findall("condition"):
        cond = Condition(c.get("field"), c.get("expression"), c.get("break", "on-false"))
        for a in c:
            act = Action(a.get("application", ""), a.get("data", ""), (a.get("inline") or "").lower() == "true")
            if a.tag == "action":
                cond.actions.append(act)
            elif a.tag == "anti-action":
                cond.anti_actions.append(act)
        conds.append(cond)
    return Extension(x.get("name", ""), (x.get("continue") or "").lower() == "true", conds)


# ------------------------------------------------------------------ preprocessor
def preprocess(text: str, globals_: dict[str, str], base: Path, overrides: dict[str, str], depth: int = 0) -> str:
    out: list[str] = []
    for line in text.splitlines():
        line = _GLOBAL_RE.sub(lambda m: globals_.get(m.group(1), ""), line)
        m = _PRE_RE.search(line)
        if not m:
            if line.strip() not in ("<include>", "</include>") or depth == 0:
                out.append(line)
            continue
        cmd, data = m.group(1).lower(), m.group(2)
        name, _, value = data.partition("=")
        name, value = name.strip(), value.strip()
        if cmd == "set":
            globals_[name] = overrides.get(name, value)
        elif cmd == "env-set":
            env = os.environ.get(value.lstrip("$"))
            if name in overrides:
                globals_[name] = overrides[name]
            elif env is not None:
                globals_[name] = env
        elif cmd == "exec-set":
            globals_[name] = overrides.get(name) or _exec(value)
        elif cmd == "include":
            pattern = data if os.path.isabs(data) else str(base / data)
            for path in sorted(glob.glob(pattern)):
                out.append(preprocess(Path(path).read_text(), globals_, base, overrides, depth + 1))
        else:
            log.warning("X-PRE-PROCESS cmd=%s not supported by the simulator; ignored", cmd)
    return "\n".join(out)


def _exec(command: str) -> str:
    try:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("exec-set %r failed: %s", command, exc)
        return ""
    return done.stdout.rstrip("\n")


def load_conf(conf_dir: str | Path, overrides: dict[str, str]) -> tuple[dict[str, str], Dialplan]:
    """Globals from vars.xml and every dialplan/*.xml (and dialplan/*/*.xml) of a conf dir."""
    base = Path(conf_dir)
    globals_: dict[str, str] = dict(STOCK_GLOBALS)
    globals_.update(overrides)
    vars_xml = base / "vars.xml"
    if vars_xml.exists():
        preprocess(vars_xml.read_text(), globals_, base, overrides)
    for key, value in overrides.items():
        globals_[key] = value
    plan = Dialplan()
    files = sorted((base / "dialplan").glob("*.xml")) + sorted((base / "dialplan").glob("*/*.xml"))
    for path in files:
        text = preprocess(path.read_text(), globals_, base, overrides)
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise ValueError("dialplan file %s is not valid XML after preprocessing: %s" % (path, exc)) from None
        plan.add_xml(root)
    return globals_, plan


def builtin_dialplan(socket_address: Callable[[], str]) -> Dialplan:
    """Every destination of every context -> socket <orchestrator> async full."""
    return _BuiltinDialplan(socket_address)


class _BuiltinDialplan(Dialplan):
    def __init__(self, socket_address: Callable[[], str]) -> None:
        super().__init__()
        self._addr = socket_address

    def extension_for(self, context: str) -> list[Extension]:
        act = Action("socket", "%s async full" % self._addr())
        return [Extension("sim_builtin", False, [Condition("destination_number", "^(.*)$", "on-false", [act])])]


# ------------------------------------------------------------------ hunt
def hunt(plan: Dialplan, ch: Channel, run_inline: Callable[[Channel, str, str], None]) -> list[tuple[str, str]] | None:
    """The actions of the call's extension(s), or None when nothing matched (no route)."""
    context = ch.profile["context"]
    if isinstance(plan, _BuiltinDialplan):
        extensions = plan.extension_for(context)
    else:
        found = plan.contexts.get(context)
        if found is None:
            return None
        extensions = found
    actions: list[tuple[str, str]] = []
    matched = False
    for ext in extensions:
        proceed = _parse_exten(ext, ch, actions, run_inline)
        if proceed:
            matched = True
            if not ext.cont:
                break
    if not matched and not actions:
        return None
    return actions


def _field_value(ch: Channel, name: str) -> str:
    if "${" in name:
        return ch.expand(name)
    if name in PROFILE_FIELDS:
        key = "chan_name" if name == "chan_name" else name
        return ch.profile.get(key, "") or ""
    return ch.get_var(name, "") or ""


def _parse_exten(ext: Extension, ch: Channel, actions: list[tuple[str, str]],
                 run_inline: Callable[[Channel, str, str], None]) -> bool:
    proceed = False
    for cond in ext.conditions:
        groups: tuple[str, ...] = ()
        if cond.field_name is not None and cond.expression is not None:
            value = _field_value(ch, cond.field_name)
            try:
                m = re.search(_pcre(cond.expression), value)
            except re.error as exc:
                log.warning("bad expression %r in extension %s: %s", cond.expression, ext.name, exc)
                m = None
            proceed = m is not None
            if m:
                groups = (m.group(0),) + tuple(g or "" for g in m.groups())
        else:
            proceed = True
        todo = cond.actions if proceed else cond.anti_actions
        for act in todo:
            data = _subst_captures(act.data, groups)
            if act.inline:
                run_inline(ch, act.app, data)
            else:
                actions.append((act.app, data))
        if proceed and cond.brk in ("on-true", "always"):
            break
        if not proceed and cond.brk in ("on-false", "always"):
            break
    return proceed


def _pcre(expression: str) -> str:
    return expression.replace("(?i)", "(?i)")


def _subst_captures(data: str, groups: tuple[str, ...]) -> str:
    def repl(m: re.Match[str]) -> str:
        idx = int(m.group(1))
        return groups[idx] if idx < len(groups) else ""

    return re.sub(r"\$(\d)", repl, data) if groups else data
