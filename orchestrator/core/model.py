"""The routing data a call is decided on: an immutable snapshot of one tenant.

Plain frozen dataclasses, no I/O. The database adapter (``orchestrator.db.snapshot``)
builds them; the call-flow core only reads them. A call keeps the snapshot it started
with even when an admin edits the data meanwhile.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Iterable, Mapping, TypeVar


# ------------------------------------------------------------------ sounds

AUDIO_EXTENSIONS = ("wav", "mp3", "ogg", "gsm", "ul", "al", "r8", "r16", "r32", "r48")
SOUND_MAX_LENGTH = 255  # the database columns' size
_SEGMENT = r"[A-Za-z0-9_-]{1,64}"
_FILE = r"%s\.(?:%s)" % (_SEGMENT, "|".join(AUDIO_EXTENSIONS))
_TONE = r"(?:%\([0-9]{1,5}(?:,[0-9]{1,5}){2,4}\)|[Ll]=[0-9]{1,3})"
SOUND_FORMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("stock", re.compile(r"(?:%s/){0,7}%s" % (_SEGMENT, _FILE))),
    ("tenant", re.compile(r"tenant:%s" % _FILE)),
    ("local_stream", re.compile(r"local_stream://%s" % _SEGMENT)),
    ("silence_stream", re.compile(r"silence_stream://[0-9]{1,7}")),
    ("tone_stream", re.compile(r"tone_stream://%s(?:;%s){0,15}" % (_TONE, _TONE))),
)
SOUND_HELP = (
    "use a stock sound like ivr/ivr-welcome.wav (letters, digits, _ and - in /-separated parts, ending in .%s), "
    "tenant:NAME.wav for the company's own file, local_stream://NAME, silence_stream://MS or "
    "tone_stream://%%(ON_MS,OFF_MS,HZ)" % ", .".join(AUDIO_EXTENSIONS[:3])
)


class SoundError(ValueError):
    """A text that is not a sound of any allowed form; the message says why and what to write."""


def sound_problem(text: str) -> str | None:
    """None when ``text`` is a sound of one of ``SOUND_FORMS``, else what is wrong with it."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    if len(text) > SOUND_MAX_LENGTH:
        return "%r is not a sound: it has %d characters, at most %d are allowed" % (shown, len(text), SOUND_MAX_LENGTH)
    if any(rx.fullmatch(text) for _, rx in SOUND_FORMS):
        return None
    for chars, why in (("$", "'$' (FreeSWITCH would expand ${...} in it)"), ("!", "'!' (it separates the files of a list)"),
                       (" \t\r\n", "a space (it would shift the application's arguments)"),
                       ("\\'\"", "a quote or backslash")):
        if any(ch in text for ch in chars):
            return "%r is not a sound: it contains %s; %s" % (shown, why, SOUND_HELP)
    if text.startswith("/") or ".." in text:
        return "%r is not a sound: absolute paths and '..' are not allowed; %s" % (shown, SOUND_HELP)
    return "%r is not a sound: %s" % (shown, SOUND_HELP)


class Sound(str):
    """A sound a tenant named, checked against the grammar (``SOUND_FORMS``): only values
    made by :meth:`parse` are Sounds. Forms:

    * ``ivr/ivr-welcome.wav``: a stock sound, a relative path of ``[A-Za-z0-9_-]`` parts
      ending in a known audio extension (no ``..``, no leading ``/``); FreeSWITCH looks it
      up under ``sound_prefix`` / its sounds directory;
    * ``tenant:NAME.wav``: the tenant's own file, played from
      ``<recordings dir>/<tenant id>/sounds/NAME.wav`` (``core.sounds.file_arg``);
    * ``local_stream://NAME``, ``silence_stream://MS``;
    * ``tone_stream://%(on,off,hz[,hz...])`` / ``L=n`` parts joined by ``;``.

    None of the forms can hold ``$``, ``\\``, quotes, blanks, ``!``, ``@``, ``{`` or a
    line break: see ``core.sounds`` for the FreeSWITCH rules this guards against.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> Sound:
        problem = sound_problem(text)
        if problem:
            raise SoundError(problem)
        return cls(text)

    @property
    def kind(self) -> str:
        for kind, rx in SOUND_FORMS:
            if rx.fullmatch(self):
                return kind
        raise SoundError("not a sound: %r" % str(self))


class TargetKind(str, enum.Enum):
    """Where a call can be sent. One reference type for every "route target" field."""

    DEPARTMENT = "department"
    EMPLOYEE = "employee"
    MENU = "menu"
    VOICEMAIL = "voicemail"
    EXTERNAL = "external"  # an external phone number (E.164)
    ANNOUNCEMENT = "announcement"  # play a sound, then hang up
    FAX = "fax"  # receive a fax (rxfax); ref_id: the voicemail box it is delivered to


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    ref_id: int | None = None  # department / employee / menu / voicemail box id
    number: str | None = None  # EXTERNAL: the E.164 number to forward to
    sound: Sound | None = None  # ANNOUNCEMENT: the sound to play before hanging up

    def describe(self) -> str:
        if self.kind is TargetKind.EXTERNAL:
            return "external %s" % self.number
        if self.kind is TargetKind.ANNOUNCEMENT:
            return "announcement %s" % (self.sound or "(default)")
        return "%s #%s" % (self.kind.value, self.ref_id)


class Role(str, enum.Enum):
    ADMINISTRATOR = "administrator"
    USER = "user"
    RESTRICTED = "restricted"


class Strategy(str, enum.Enum):
    """How a department's members are rung (``core.strategy``)."""

    RING_ALL = "ring_all"
    LONGEST_IDLE = "longest_idle"
    ONE_BY_ONE = "one_by_one"
    ROUND_ROBIN = "round_robin"
    INCREASING = "increasing"
    ESCALATION = "escalation"
    WEIGHTED = "weighted"
    LEAST_TALK_TIME = "least_talk_time"
    FEWEST_CALLS = "fewest_calls"
    RANDOM = "random"


class NumberMode(str, enum.Enum):
    ALWAYS = "always"  # 24/7: always the work-hours target
    SCHEDULE = "schedule"  # work-hours target inside the schedule, after-hours outside


@dataclass(frozen=True)
class Employee:
    id: int
    name: str
    extension: str
    role: Role = Role.USER
    email: str | None = None
    mobile: str | None = None  # E.164
    forward_to_mobile_after: int | None = None  # seconds of ringing before the mobile rings
    ring_seconds: int = 20  # how long the desk phone rings when called directly
    outbound_caller_id: str | None = None
    logged_in: bool = True
    voicemail_box_id: int | None = None


@dataclass(frozen=True)
class Member:
    employee_id: int
    order: int = 0
    weight: int = 5  # priority for the weighted strategy (e.g. 8 vs 5)
    escalation_offset: int = 0  # seconds after the call starts ringing the department


@dataclass(frozen=True)
class QueueSettings:
    music: Sound | None = None  # hold music (e.g. local_stream://moh)
    announcement: Sound | None = None  # played periodically while waiting
    announce_position: bool = False
    max_wait: int = 300  # seconds a caller may wait in the queue
    max_length: int = 0  # 0 = unlimited
    callback_allowed: bool = False
    callback_key: str = "1"
    announce_every: int = 30  # seconds of music between announcements (announcement / position)
    # Callbacks (workers.jobs): the apology played to a client whose callback expired (no
    # member answered within the department's no_answer_timeout), the prompt a called-back
    # client hears on answering, the attempts to reach the client and the delay between them.
    callback_apology: Sound | None = None
    callback_prompt: Sound | None = None
    callback_attempts: int = 3
    callback_retry_delay: int = 60
    callback_box_id: int | None = None  # the apology's voicemail box (None: the no-answer target's)


@dataclass(frozen=True)
class Department:
    id: int
    name: str
    extension: str
    strategy: Strategy = Strategy.RING_ALL
    ring_seconds: int = 20  # per member
    no_answer_timeout: int = 60  # overall, seconds
    no_answer_target: Target | None = None
    wrapup_seconds: int = 0
    pause_after_missed: int = 0  # consecutive missed offers that pause a member; 0 = never
    stats_window_days: int = 1  # least talk time / fewest calls: today (1) or the last N days
    queue: QueueSettings = QueueSettings()
    members: tuple[Member, ...] = ()
    outbound_caller_id: str | None = None  # members' outbound calls, when theirs is not set


@dataclass(frozen=True)
class Interval:
    """Open from ``start`` to ``end`` minutes after local midnight of ``weekday``
    (0 = Monday). ``end`` may exceed 1440 for an interval that spans midnight."""

    weekday: int
    start: int
    end: int


@dataclass(frozen=True)
class ScheduleException:
    day: date
    closed: bool = True
    intervals: tuple[tuple[int, int], ...] = ()  # special hours (start, end) minutes
    name: str = ""


@dataclass(frozen=True)
class Schedule:
    id: int
    name: str
    intervals: tuple[Interval, ...] = ()
    exceptions: tuple[ScheduleException, ...] = ()
    is_default: bool = False


@dataclass(frozen=True)
class PhoneNumber:
    e164: str
    mode: NumberMode = NumberMode.ALWAYS
    work_target: Target | None = None
    after_hours_target: Target | None = None
    schedule_id: int | None = None  # None: the tenant's default schedule
    dial_code: str | None = None  # *7<dial_code>*<number>: call out with this number


@dataclass(frozen=True)
class MenuOption:
    digit: str
    target: Target


@dataclass(frozen=True)
class VoiceMenu:
    id: int
    name: str
    extension: str | None = None
    greeting: Sound | None = None
    options: tuple[MenuOption, ...] = ()
    timeout_seconds: int = 5
    default_target: Target | None = None
    invalid_sound: Sound | None = None
    max_invalid: int = 3
    direct_dial: bool = True
    back_digit: str | None = None  # returns to the menu the caller came from


class CallerMatch(str, enum.Enum):
    """What a caller-based rule looks at (``core.caller_rules``)."""

    COUNTRY = "country"  # ISO 3166 codes: RU, DE
    REGION = "region"  # place name of phonenumbers' geocoder, whole or its last part
    CITY = "city"  # first part of that place name
    PREFIX = "prefix"  # E.164 prefixes: +7812
    LIST = "list"  # E.164 numbers (VIP list; with block: a block list)
    LAST_AGENT = "last_agent"  # the employee who last talked with the caller (call history)
    CRM = "crm"  # the employee the tenant's CRM names for the caller


LOOKUP_MATCHES = frozenset({CallerMatch.LAST_AGENT, CallerMatch.CRM})  # need the adapter's answer


@dataclass(frozen=True)
class CallerRule:
    """One caller-based rule, tried before the number's schedule, in ``order``.

    ``target`` is where matching callers go; for LAST_AGENT / CRM it is the fallback when
    no employee is found (None: the next rules, then the schedule, decide). A ``block``
    rule refuses matching callers (announcement ``target.sound`` if given, then
    CALL_REJECTED). ``numbers`` limits the rule to these of the tenant's numbers.
    """

    id: int
    name: str
    match: CallerMatch
    values: tuple[str, ...] = ()
    negate: bool = False  # match callers NOT matching the values
    target: Target | None = None
    block: bool = False
    numbers: tuple[str, ...] = ()  # E.164; empty: every number of the tenant
    order: int = 0
    days: int = 30  # LAST_AGENT: how far back the call history counts
    crm_url: str = ""  # CRM: the tenant's endpoint (contract in orchestrator/crm.py)
    crm_timeout_ms: int = 1000  # CRM: longest wait for its answer


@dataclass(frozen=True)
class VoicemailBox:
    id: int
    name: str
    extension: str | None = None
    greeting: Sound | None = None
    email: str | None = None
    owner_employee_ids: tuple[int, ...] = ()
    max_message_seconds: int = 120


def mail_recipients(addresses: Iterable[str | None]) -> str | None:
    """One ``To`` value for a box's messages and faxes: the box's own address first, then
    its owners' (callers pass them in that order), each once (case-insensitive); None
    when there is none."""
    seen: dict[str, str] = {}
    for address in addresses:
        address = (address or "").strip()
        if address and address.lower() not in seen:
            seen[address.lower()] = address
    return ", ".join(seen.values()) or None


K = TypeVar("K")
V = TypeVar("V")


def _frozen(mapping: Mapping[K, V]) -> Mapping[K, V]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class TenantSnapshot:
    """Everything needed to route a call of one tenant, frozen at ``version``."""

    tenant_id: int
    name: str
    sip_domain: str
    timezone: str = "UTC"
    enabled: bool = True
    max_concurrent_calls: int = 0  # 0 = unlimited
    version: int = 0
    # What external phones see when a call is forwarded to them (an external target, an
    # employee's mobile): "caller" (the caller's own number) or "number" (the tenant's
    # number that was called). Employees' own calls always show their outbound caller ID.
    forward_caller_id: str = "caller"
    employees: Mapping[int, Employee] = field(default_factory=dict)
    departments: Mapping[int, Department] = field(default_factory=dict)
    numbers: Mapping[str, PhoneNumber] = field(default_factory=dict)
    schedules: Mapping[int, Schedule] = field(default_factory=dict)
    menus: Mapping[int, VoiceMenu] = field(default_factory=dict)
    voicemail_boxes: Mapping[int, VoicemailBox] = field(default_factory=dict)
    caller_rules: tuple[CallerRule, ...] = ()  # in the order they are tried

    def __post_init__(self) -> None:
        for name in ("employees", "departments", "numbers", "schedules", "menus", "voicemail_boxes"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "caller_rules", tuple(sorted(self.caller_rules, key=lambda r: (r.order, r.id))))
        ext: dict[str, Target] = {}
        for emp in self.employees.values():
            ext[emp.extension] = Target(TargetKind.EMPLOYEE, emp.id)
        for dep in self.departments.values():
            ext[dep.extension] = Target(TargetKind.DEPARTMENT, dep.id)
        for menu in self.menus.values():
            if menu.extension:
                ext[menu.extension] = Target(TargetKind.MENU, menu.id)
        for box in self.voicemail_boxes.values():
            if box.extension:
                ext[box.extension] = Target(TargetKind.VOICEMAIL, box.id)
        object.__setattr__(self, "_extensions", MappingProxyType(ext))

    def target_for_extension(self, extension: str) -> Target | None:
        extensions: Mapping[str, Target] = self._extensions  # type: ignore[attr-defined]
        return extensions.get(extension)

    def default_schedule(self) -> Schedule | None:
        for sched in self.schedules.values():
            if sched.is_default:
                return sched
        return None


@dataclass(frozen=True)
class RoutingIndex:
    """Which tenant owns a dialed number or a SIP domain (all tenants, small)."""

    numbers: Mapping[str, int] = field(default_factory=dict)  # E.164 -> tenant id
    domains: Mapping[str, int] = field(default_factory=dict)  # SIP domain -> tenant id
    version: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", _frozen(self.numbers))
        object.__setattr__(self, "domains", _frozen(self.domains))
