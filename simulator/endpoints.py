"""Scripted far ends: registered users (phones) and external numbers (behind a gateway).

A behaviour says what the far end does with an INVITE, in simulated seconds:
``Answer(after, hangup_after)``, ``Busy(after)`` (486), ``Reject(cause, after)``,
``NoAnswer()`` (rings until cancelled). Every endpoint keeps a log of its legs.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    after: float = 1.0
    hangup_after: float | None = None


@dataclass(frozen=True)
class Busy:
    after: float = 0.0


@dataclass(frozen=True)
class Reject:
    cause: str = "CALL_REJECTED"
    after: float = 0.0


@dataclass(frozen=True)
class NoAnswer:
    pass


Behavior = Answer | Busy | Reject | NoAnswer


@dataclass
class LegRecord:
    """One INVITE an endpoint received (all times in simulated seconds)."""

    leg_uuid: str
    a_uuid: str | None
    invited_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    cause: str | None = None
    caller_id: str = ""  # the Caller-ID number the INVITE carried (origination_caller_id_number)


@dataclass
class Endpoint:
    key: str  # "user@domain" or the external number
    behavior: Behavior
    user: str
    domain: str | None = None
    registered: bool = True
    port: int = 5070
    legs: list[LegRecord] = field(default_factory=list)

    @property
    def contact_host(self) -> str:
        return "127.0.0.1:%d" % self.port

    @property
    def active_legs(self) -> list[LegRecord]:
        return [leg for leg in self.legs if leg.ended_at is None]

    def leg(self, leg_uuid: str) -> LegRecord | None:
        for rec in self.legs:
            if rec.leg_uuid == leg_uuid:
                return rec
        return None


class Directory:
    """The users FreeSWITCH's directory knows, and the external numbers (gateways)."""

    def __init__(self) -> None:
        self.users: dict[str, Endpoint] = {}
        self.externals: dict[str, Endpoint] = {}
        self.domains: set[str] = set()
        self._port = 5170

    def _next_port(self) -> int:
        self._port += 1
        return self._port

    def add_user(self, user: str, domain: str, registered: bool = True, behavior: Behavior | None = None) -> Endpoint:
        ep = Endpoint("%s@%s" % (user, domain), behavior or Answer(), user, domain, registered, self._next_port())
        self.users[ep.key] = ep
        self.domains.add(domain)
        return ep

    def add_external(self, number: str, behavior: Behavior | None = None) -> Endpoint:
        ep = Endpoint(number, behavior or Answer(), number, None, True, self._next_port())
        self.externals[number] = ep
        return ep

    def find(self, key: str) -> Endpoint | None:
        """By 'user@domain', external number, or bare user/number part."""
        if key in self.users:
            return self.users[key]
        if key in self.externals:
            return self.externals[key]
        user = key.split("@", 1)[0]
        if user in self.externals:
            return self.externals[user]
        for ep in self.users.values():
            if ep.user == user:
                return ep
        return None
