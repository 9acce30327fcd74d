"""The call's live facts the orchestrator writes for the live page (call_handler.live_facts):
a table of call states, no I/O."""
from __future__ import annotations

from dataclasses import replace

from orchestrator.call_handler import live_facts
from orchestrator.core import callflow
from orchestrator.core.actions import CallInfo
from orchestrator.core.callstate import CallState
from orchestrator.core.offering import OfferRun
from orchestrator.core.plan import Announce, MenuStep, Ring, Voicemail

CALL = CallInfo("u1", "public", "+74950000001", "+79160000009")
OFFER = OfferRun(department_id=3, label="200 Sales", deadline_ms=0, held=(7, 8))


def test_live_facts_table() -> None:
    base = CallState(CALL)
    ring = Ring(dial="x", label="ring", owners={"leg-a": 7, "leg-b": 8, "ext": 7})
    cases = [
        (base, {"state": "routing", "with": "", "department": ""}),
        (replace(base, current=MenuStep(1, "menu Main")), {"state": "menu", "with": "", "department": ""}),
        (replace(base, current=Voicemail(1, None, 60, "vm")), {"state": "voicemail", "with": "", "department": ""}),
        (replace(base, current=Announce("a.wav", "ann")), {"state": "announcement", "with": "", "department": ""}),
        (replace(base, current=ring), {"state": "ringing", "with": "7,8", "department": ""}),  # an employee's own legs
        (replace(base, current=ring, offer=OFFER), {"state": "ringing", "with": "7,8", "department": "3"}),
        (replace(base, offer=replace(OFFER, waiting=True, held=())), {"state": "queue", "with": "", "department": "3"}),
        (replace(base, current=ring, offer=replace(OFFER, held=(7,), winner=7), phase=callflow.TALKING, answered_by=7),
         {"state": "talking", "with": "7", "department": "3"}),
        (replace(base, current=ring, phase=callflow.TALKING, outbound_to="+74951112233", employee_id=9,
                 answered_by=9), {"state": "talking", "with": "tel:+74951112233", "department": ""}),  # the number, not 9
        (replace(base, current=Ring(dial="x", label="out"), outbound_to="+74951112233"),
         {"state": "ringing", "with": "tel:+74951112233", "department": ""}),
        (replace(base, current=Ring(dial="x", label="out"), outbound_to="112"),  # never employee 112
         {"state": "ringing", "with": "tel:112", "department": ""}),
    ]
    for state, facts in cases:
        assert live_facts(state) == facts, (state, facts)
