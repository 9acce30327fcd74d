"""The call's state and what the core is given and returns: plain frozen values.

Shared by ``callflow`` (the state machine) and the step modules it drives
(``departments``); no I/O.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Callable

from orchestrator.core.actions import Action, CallerKnown, CallInfo, Execute
from orchestrator.core.model import TenantSnapshot
from orchestrator.core.offering import OfferRun
from orchestrator.core.plan import Policy, Step

# Phases
RUNNING = "running"  # a step's blocking app is in flight
TALKING = "talking"  # bridged to someone
ENDING = "ending"  # the caller hung up; waiting for the last app's completion
DONE = "done"


@dataclass(frozen=True)
class CallState:
    call: CallInfo
    phase: str = RUNNING
    current: Step | None = None
    plan: tuple[Step, ...] = ()
    awaiting: str = ""  # app id (Event-UUID) of the blocking app in flight
    awaiting_app: str = ""
    seq: int = 0
    route: tuple[str, ...] = ()
    answered_by: int | None = None
    recording: str = ""  # path of the voicemail being recorded (or the fax being received)
    lookup: str = ""  # request id of the caller lookup (LookupCaller) awaited
    answers: tuple[CallerKnown, ...] = ()  # the caller lookups answered so far
    offer: OfferRun | None = None  # the department offer in progress
    outbound_to: str = ""  # an employee's call out: the number dialled (E.164)
    employee_id: int | None = None  # ... and the employee placing it
    hangup_cause: str = ""  # the channel's cause when it went while record/rxfax ran (ENDING)


@dataclass(frozen=True)
class Decision:
    state: CallState
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Context:
    """What the core may consult besides the event: data, policy, clock, ids."""

    snapshot: TenantSnapshot | None
    policy: Policy
    now_ms: int
    new_id: Callable[[], str]
    rand: Callable[[], float] = field(default=random.random)  # weighted / random strategies



# Continue a call with the next steps of its plan (``callflow._run_steps``).
RunSteps = Callable[[CallState, list[Step], Context, list[Action]], Decision]


def blocking(state: CallState, actions: list[Action], app: str, arg: str, ctx: Context) -> Decision:
    app_id = ctx.new_id()
    actions.append(Execute(app, arg, app_id, wait=True))
    return Decision(replace(state, awaiting=app_id, awaiting_app=app, seq=state.seq + 1), tuple(actions))
