"""FreeSWITCH api commands on top of an ESL connection's ``api`` and ``bgapi``.

A mixin for :class:`orchestrator.esl.inbound.InboundClient`: the command syntax and the
reply shapes (transcripts inbound_04..10, P06, P09 from FreeSWITCH 1.10.12) live here,
the connection handling there.
"""
from __future__ import annotations

import json
import uuid as _uuid
from typing import Mapping

from orchestrator.errors import EslCommandError, EslError, EslTimeout, ProtocolError

# Extra seconds we wait for an originate beyond its originate_timeout (FreeSWITCH's
# timers tick on whole seconds; ringing ends up to ~1 s late, plus the SIP CANCEL).
ORIGINATE_MARGIN_S = 5.0


class FreeSwitchApi:
    """Needs ``api(cmd, timeout=None, check=False)`` and ``bgapi(cmd, timeout=...)``."""

    def api(self, cmd: str, timeout: float | None = None, check: bool = False) -> str:
        raise NotImplementedError

    def bgapi(self, cmd: str, job_uuid: str | None = None, timeout: float | None = None, check: bool = False) -> str:
        raise NotImplementedError

    def originate(
        self,
        dial_string: str,
        app: str = "&park()",
        variables: Mapping[str, str] | None = None,
        timeout_s: int = 60,
        origination_uuid: str | None = None,
    ) -> str:
        """Originate a leg (bgapi) and return its uuid once it answered.

        ``timeout_s`` becomes ``originate_timeout`` unless ``variables`` has one. The
        leg gets our ``origination_uuid``, so that a leg we stopped waiting for can
        still be killed. Failure: :class:`EslCommandError` whose ``cause`` is the
        hangup cause (USER_NOT_REGISTERED, USER_BUSY, NO_ANSWER, SUBSCRIBER_ABSENT ...).
        """
        leg = origination_uuid or str(_uuid.uuid4())
        merged: dict[str, str] = {"origination_uuid": leg}
        merged.update(variables or {})
        merged.setdefault("originate_timeout", str(int(timeout_s)))
        cmd = "originate %s %s" % (with_channel_variables(dial_string, merged), app)
        try:
            body = self.bgapi(cmd, timeout=float(merged["originate_timeout"]) + ORIGINATE_MARGIN_S)
        except EslTimeout:
            self._kill_quietly(leg)
            raise
        if body.startswith("+OK"):
            return body[3:].strip() or leg
        raise EslCommandError("originate " + dial_string, body)

    def uuid_bridge(self, a: str, b: str) -> str:
        return self.api("uuid_bridge %s %s" % (a, b), check=True).strip()

    def uuid_kill(self, uuid: str, cause: str | None = None) -> bool:
        """Hang a channel up; False when it was already gone."""
        try:
            self.api("uuid_kill %s%s" % (uuid, " " + cause if cause else ""), check=True)
        except EslCommandError as exc:
            if "No such channel" in exc.reply:
                return False
            raise
        return True

    def uuid_break(self, uuid: str, all: bool = True) -> None:  # noqa: A002 - FreeSWITCH's word
        self.api("uuid_break %s%s" % (uuid, " all" if all else ""), check=True)

    def uuid_transfer(self, uuid: str, destination: str, dialplan: str = "XML", context: str = "default") -> None:
        self.api("uuid_transfer %s %s %s %s" % (uuid, destination, dialplan, context), check=True)

    def uuid_getvar(self, uuid: str, name: str) -> str | None:
        value = self.api("uuid_getvar %s %s" % (uuid, name), check=True)
        return None if value == "_undef_" else value

    def uuid_setvar(self, uuid: str, name: str, value: str | None = None) -> None:
        """Set a channel variable; ``None`` unsets it."""
        tail = "" if value is None else " " + value
        self.api("uuid_setvar %s %s%s" % (uuid, name, tail), check=True)

    def show_channels(self) -> list[dict[str, str]]:
        body = self.api("show channels as json", check=True)
        # Anything but FreeSWITCH's shape is a ProtocolError, never a traceback: deep
        # nesting (RecursionError), 4,300-digit numbers (ValueError), other types.
        try:
            data = json.loads(body)
        except ValueError as exc:  # json.JSONDecodeError included
            raise ProtocolError("show channels as json: not JSON (%s)" % str(exc)[:200]) from None
        except RecursionError:
            raise ProtocolError("show channels as json: nested too deeply") from None
        if not isinstance(data, dict):
            raise ProtocolError("show channels as json: not an object")
        rows = data.get("rows", [])
        count = data.get("row_count", 0)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ProtocolError("show channels as json: rows is not a list of objects")
        if isinstance(count, str) and count.isascii() and count.isdigit() and len(count) < 10:
            count = int(count)
        if type(count) is not int or count != len(rows):
            raise ProtocolError("show channels as json: row_count %s but %d rows" % (str(count)[:40], len(rows)))
        return [dict(r) for r in rows]

    def _kill_quietly(self, uuid: str) -> None:
        try:
            self.uuid_kill(uuid)
        except EslError:
            pass



def with_channel_variables(dial_string: str, variables: Mapping[str, str]) -> str:
    """``{k=v,...}dial_string``, merged into a ``{...}`` prefix the string already has.

    Values are escaped the way FreeSWITCH's originate parses them: ``,`` as ``\\,``
    and values with spaces in single quotes.
    """
    inner = ",".join("%s=%s" % (k, _quote_value(str(v))) for k, v in variables.items())
    if dial_string.startswith("{") and "}" in dial_string:
        close = dial_string.index("}")
        existing = dial_string[1:close]
        rest = dial_string[close + 1 :]
        inner = ",".join(p for p in (inner, existing) if p)
        return "{%s}%s" % (inner, rest)
    return "{%s}%s" % (inner, dial_string) if inner else dial_string


def _quote_value(value: str) -> str:
    value = value.replace(",", "\\,")
    if " " in value and not (value.startswith("'") and value.endswith("'")):
        value = "'%s'" % value
    return value
