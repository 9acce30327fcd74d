"""Every exception the product raises on purpose.

    PbxError                      base; str() says what was wrong and what to do
    ├── ConfigError               a setting is missing, malformed or unsafe for production
    ├── ProtocolError             bytes from FreeSWITCH (or a client) are not valid ESL
    ├── EslError                  talking to FreeSWITCH's event socket failed
    │   ├── EslAuthError          FreeSWITCH refused our ESL password
    │   ├── EslConnectionError    cannot reach FreeSWITCH, or the connection dropped
    │   ├── EslTimeout            FreeSWITCH did not answer within the deadline
    │   └── EslCommandError       FreeSWITCH answered -ERR (carries the hangup cause)
    ├── CallGone                  the call hung up / the socket closed while we worked
    │   └── CallRefused           we closed a call's socket at set-up (a peer that broke
    │                             the protocol, never answered, or sent no usable
    │                             Unique-ID); the session logged why, once
    ├── RoutingError              tenant data cannot route this call (cycle, missing ref)
    ├── TenantDataError           a tenant document or admin form breaks a rule;
    │                             carries a list of FieldError (field path, line, message)
    └── StoreError                Redis or the database failed in a way we can name
"""
from __future__ import annotations

from dataclasses import dataclass


class PbxError(Exception):
    """Base of every error raised on purpose by the product."""


class ConfigError(PbxError):
    pass


class ProtocolError(PbxError):
    pass


class EslError(PbxError):
    pass


class EslAuthError(EslError):
    pass


class EslConnectionError(EslError):
    pass


class EslTimeout(EslError):
    pass


class EslCommandError(EslError):
    """FreeSWITCH replied ``-ERR ...``; ``cause`` is the text after ``-ERR ``."""

    def __init__(self, command: str, reply: str) -> None:
        self.command = command
        self.reply = reply.strip()
        self.cause = self.reply[5:].strip() if self.reply.startswith("-ERR") else self.reply
        super().__init__("%s failed: %s" % (command.split(" ", 1)[0], self.reply))


class CallGone(PbxError):
    pass


class CallRefused(CallGone):
    """The session refused the call before routing and already logged the one line
    saying why; FreeSWITCH continues its dialplan after ``socket`` (our fallback)."""


class RoutingError(PbxError):
    pass


class StoreError(PbxError):
    pass


@dataclass(frozen=True)
class FieldError:
    """One broken rule: where (field path like ``departments[2].members[0].employee``,
    and the source line when the data came from a YAML document) and what."""

    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = "line %d: " % self.line if self.line is not None else ""
        return "%s%s: %s" % (where, self.field, self.message)


class TenantDataError(PbxError):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors) or "invalid tenant data")
