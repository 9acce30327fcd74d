"""The department form in groups (who, how they ring, when nobody answers, queue and
callback) with the ring strategies in words: one line each on what the caller's call
does (``orchestrator.core.strategy`` is the truth these lines describe)."""
from __future__ import annotations

from typing import Any, Sequence

from flask_admin.form import rules

from orchestrator.core.model import Strategy

STRATEGY_WORDS: dict[str, tuple[str, str]] = {
    Strategy.RING_ALL.value: ("All at once", "every available member's phone rings together; the first to answer "
                                             "takes the call"),
    Strategy.ONE_BY_ONE.value: ("One by one, in list order", "each member rings for their ring time, then the "
                                                             "next, always starting from the top of the list"),
    Strategy.ROUND_ROBIN.value: ("Taking turns", "one by one, starting after the member who answered the last call"),
    Strategy.LONGEST_IDLE.value: ("Longest free first", "one by one, starting with the member who has been "
                                                        "without a call the longest"),
    Strategy.INCREASING.value: ("Adding one more each ring time", "the first member rings, after one ring time the "
                                                                  "next joins, and so on; earlier ones keep ringing"),
    Strategy.ESCALATION.value: ("In steps", "each member starts ringing at their own step (seconds after the call "
                                            "reaches the department); earlier ones keep ringing"),
    Strategy.WEIGHTED.value: ("By weight", "one by one in a random order where a higher weight comes first more "
                                           "often (8 against 5: first 8 times in 13)"),
    Strategy.LEAST_TALK_TIME.value: ("Least talk time first", "one by one, starting with the member who talked "
                                                              "least in the statistics window"),
    Strategy.FEWEST_CALLS.value: ("Fewest calls first", "one by one, starting with the member who answered the "
                                                        "fewest calls in the statistics window"),
    Strategy.RANDOM.value: ("Random", "one by one in a random order"),
}
STRATEGY_CHOICES = [(value, "%s: %s" % words) for value, words in STRATEGY_WORDS.items()]


def strategy_name(value: Any) -> str:
    value = getattr(value, "value", value)
    return STRATEGY_WORDS.get(value, (str(value), ""))[0]


GROUPS: tuple[tuple[str, Sequence[str]], ...] = (
    ("Who", ("tenant", "name", "extension", "members")),
    ("How they ring", ("strategy", "ring_seconds", "wrapup_seconds", "pause_after_missed", "stats_window_days")),
    ("When nobody answers", ("no_answer_timeout", "no_answer_kind", "no_answer_ref_id", "no_answer_number",
                             "no_answer_sound")),
    ("Queue and callback", ()),  # every queue_* field, whichever the form has
    ("Outgoing calls", ("outbound_caller_id",)),
)


class OptionalField(rules.Field):
    """A field rule that renders nothing when the form has no such field (the tenant
    picker exists for operators only)."""

    def __call__(self, form: Any, form_opts: Any = None, field_args: Any = None) -> Any:
        if getattr(form, self.field_name, None) is None:  # WTForms leaves a deleted field as None
            return ""
        return super().__call__(form, form_opts, field_args)


class RenderedElsewhere(rules.BaseRule):
    """Fields the form template renders itself (the CSRF token, in ``hidden_tag()``):
    named so Flask-Admin does not warn that the rules leave them out."""

    def __init__(self, *names: str) -> None:
        super().__init__()
        self.names = list(names)

    @property
    def visible_fields(self) -> list[str]:
        return self.names

    def __call__(self, form: Any, form_opts: Any = None, field_args: Any = None) -> str:
        return ""


def grouped_rules(form_columns: Sequence[str]) -> list[Any]:
    """``form_rules``: the form's fields in ``GROUPS``; a field no group names (one added
    later) still shows, under its queue group or "More", never silently dropped."""
    placed: dict[str, list[str]] = {title: [] for title, _ in GROUPS}
    extra: list[str] = []
    for name in form_columns:
        title = next((t for t, names in GROUPS if name in names), None)
        if title is None and name.startswith("queue_"):
            title = "Queue and callback"
        if title is None:
            extra.append(name)
        else:
            placed[title].append(name)
    out = [rules.FieldSet([OptionalField(n) for n in names], title) for title, names in placed.items() if names]
    if extra:
        out.append(rules.FieldSet([OptionalField(n) for n in extra], "More"))
    return out + [RenderedElsewhere("csrf_token")]
