"""The pure domain of number masking: numbers, allocation, routing, message text rules.

Imports neither Flask nor SQLAlchemy, so every rule here is tested without an app.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import phonenumbers

# ---------------------------------------------------------------- numbers


class InvalidNumber(ValueError):
    """A phone number that cannot be used; str() says why, in words for a person."""


def parse_number(raw: object, default_region: str = "GB") -> str:
    """Parse user or webhook input into E.164 (`+447700900123`).

    National input ("07700 900123") is read with `default_region`. Digits without a plus that are not a
    possible national number are tried as international (Vonage sends `447700900123`). Numbers must be
    *possible* (right length for their country); we do not require a number to be allocated to a carrier,
    since fictional test ranges (Ofcom's 07700 900xxx) must work.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidNumber("a phone number is required")
    text = raw.strip()
    if len(text) > 32:
        raise InvalidNumber("too long to be a phone number")
    candidates: list[tuple[str, str | None]] = [(text, default_region)]
    digits = "".join(ch for ch in text if ch.isdigit())
    if not text.startswith(("+", "0")) and digits:
        candidates.append(("+" + digits, None))
    reason = "not a phone number"
    for candidate, region in candidates:
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        reason = "not a possible phone number (wrong length for its country)"
    raise InvalidNumber(reason)


# Number types that can never receive an SMS from us, and how a person would name them
# (phonenumbers.PhoneNumberType). A fixed line is refused too unless ALLOW_FIXED_LINE (some carriers read
# texts to landlines aloud). Accepted: MOBILE, FIXED_LINE_OR_MOBILE (all US and Canadian numbers), VOIP and
# PERSONAL_NUMBER (some receive texts; a failed delivery says when not), and UNKNOWN (fictional test ranges
# such as Ofcom's 07700 900xxx, and numbers newer than the metadata).
NO_SMS_TYPES = {
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    phonenumbers.PhoneNumberType.SHARED_COST: "a shared-cost number",
    phonenumbers.PhoneNumberType.TOLL_FREE: "a toll-free number",
    phonenumbers.PhoneNumberType.UAN: "a company's non-geographic number",
    phonenumbers.PhoneNumberType.PAGER: "a pager number",
    phonenumbers.PhoneNumberType.VOICEMAIL: "a voicemail access number",
}


def sms_refusal(e164: str, allow_fixed_line: bool = False) -> str | None:
    """Why a participant's number cannot receive texts ("a landline number"), or None when it may.

    Decided by the number's type in `phonenumbers`' metadata (see NO_SMS_TYPES).
    """
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None  # parse_number() already accepted it; nothing more to tell
    kind = phonenumbers.number_type(parsed)
    if kind == phonenumbers.PhoneNumberType.FIXED_LINE and not allow_fixed_line:
        return "a landline number"
    return NO_SMS_TYPES.get(kind)


def region_of(e164: str) -> str | None:
    """ISO region (GB, US, ...) of an E.164 number, or None when it cannot be told."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    # Fictional ranges (07700 900xxx) have no carrier region: fall back to the country code's main region.
    region = phonenumbers.region_code_for_number(parsed) or phonenumbers.region_code_for_country_code(
        parsed.country_code
    )
    return None if region in (None, "ZZ", "001") else region


def to_vonage(e164: str) -> str:
    """Vonage's wire form: international digits without the plus."""
    return e164.lstrip("+")


def mask(e164: str | None) -> str:
    """A number with all but its country code and last four digits hidden, for logs and screens.

    `+447700900123` -> `+44 •••• ••01 23`.
    """
    if not e164:
        return "—"
    try:
        cc = str(phonenumbers.parse(e164, None).country_code)
    except phonenumbers.NumberParseException:
        cc = ""
    digits = e164.lstrip("+")
    national = digits[len(cc):] if cc and digits.startswith(cc) else digits
    masked = "•" * max(len(national) - 4, 0) + national[-4:]
    groups = " ".join(masked[i : i + 4] for i in range(0, len(masked), 4))
    return f"+{cc} {groups}" if cc else groups


def mask_for_log(e164: str | None) -> str:
    """Compact mask for log lines: `+44•••••0123`."""
    if not e164:
        return "-"
    return e164[:3] + "•" * max(len(e164) - 7, 0) + e164[-4:]


# ---------------------------------------------------------------- allocation


@dataclass(frozen=True)
class PoolEntry:
    """A proxy number as allocation sees it."""

    number: str
    region: str | None
    load: int  # active chats on this number


def choose_proxy(
    pool: Iterable[PoolEntry],
    busy: set[str],
    regions: set[str | None],
    previous: Iterable[str] = (),
) -> str | None:
    """Pick the proxy number for a new chat, or None when no number is free for both people.

    `busy` holds the numbers on which either participant already has an active chat (the routing key
    (real number, proxy number) must stay unique). Preference: a number these two used together before
    (most recent first), then a number in one of their countries, then the least loaded; ties go to the
    number itself so the choice is deterministic.
    """
    free = [p for p in pool if p.number not in busy]
    if not free:
        return None
    by_number = {p.number: p for p in free}
    for number in previous:
        if number in by_number:
            return number
    return min(free, key=lambda p: (p.region not in regions, p.load, p.number)).number


# ---------------------------------------------------------------- routing


@dataclass(frozen=True)
class Parties:
    a: str
    b: str


def other_party(parties: Parties, sender: str) -> tuple[str, str]:
    """(side of the sender, number of the other party) for a sender in this chat."""
    if sender == parties.a:
        return "a", parties.b
    if sender == parties.b:
        return "b", parties.a
    raise ValueError("sender is not a participant of this chat")


# ---------------------------------------------------------------- message text

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})
KEYWORDS = STOP_WORDS | START_WORDS


def _keyword(text: str | None) -> str:
    return text.strip().strip(".!").strip().upper() if text else ""


def is_opt_out(text: str | None) -> bool:
    """True when the whole message is a stop word (case, spaces and final punctuation ignored)."""
    return _keyword(text) in STOP_WORDS


def is_opt_in(text: str | None) -> bool:
    """True when the whole message is START or UNSTOP: the sender lifts their opt-out."""
    return _keyword(text) in START_WORDS


def is_keyword(text: str | None) -> bool:
    """STOP, START or a synonym: handled by the service itself, never relayed as a text."""
    return _keyword(text) in KEYWORDS


# ---------------------------------------------------------------- leak guard

NUMBER_REMOVED = "[number removed]"
EMAIL_REMOVED = "[email removed]"
# An address as people type it; good enough to catch a party handing out theirs (no RFC 5322 parser needed).
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


@dataclass(frozen=True)
class Redaction:
    """A text with contact details replaced; `found` names what was removed ("number", "email")."""

    text: str
    found: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.found)


def _looks_like_phone(match: phonenumbers.PhoneNumberMatch) -> bool:
    """Keep what a person would read as a phone number, not a price, a date or a short order number.

    The matcher runs at POSSIBLE leniency, since fictional and newly allocated ranges are not VALID; then a
    match counts when it is a valid number, or has 10+ digits, or 9+ digits written with + or a trunk 0.
    """
    digits = sum(ch.isdigit() for ch in match.raw_string)
    if phonenumbers.is_valid_number(match.number) or digits >= 10:
        return True
    return digits >= 9 and match.raw_string.lstrip()[:1] in ("+", "0")


def redact_contacts(text: str, region: str | None) -> Redaction:
    """Replace phone numbers and e-mail addresses inside a text with `[number removed]`/`[email removed]`.

    Numbers are found by `phonenumbers.PhoneNumberMatcher` (national ones read in `region`), addresses by a
    plain pattern; addresses go first, so digits inside one are not taken for a number.
    """
    found: list[str] = []
    out, n = _EMAIL.subn(EMAIL_REMOVED, text)
    if n:
        found.append("email")
    pieces: list[str] = []
    last = 0
    matcher = phonenumbers.PhoneNumberMatcher(out, region or "ZZ", leniency=phonenumbers.Leniency.POSSIBLE)
    for match in matcher:
        if not _looks_like_phone(match):
            continue
        pieces.append(out[last : match.start])
        pieces.append(NUMBER_REMOVED)
        last = match.end
    if pieces:
        found.append("number")
        out = "".join(pieces) + out[last:]
    return Redaction(out, tuple(found))


GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = frozenset("^{}\\[~]|€\f")


def sms_type(text: str) -> str:
    """'text' when every character is in the GSM 03.38 alphabet, else 'unicode'."""
    return "text" if all(ch in GSM7_BASIC or ch in GSM7_EXT for ch in text) else "unicode"


def segments(text: str) -> int:
    """How many SMS parts the text takes."""
    if sms_type(text) == "text":
        units = sum(2 if ch in GSM7_EXT else 1 for ch in text)
        single, per_part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, per_part = 70, 67
    return 1 if units <= single else math.ceil(units / per_part)


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill a configurable notice template; unknown placeholders are left as written."""

    class _Keep(dict):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    return template.format_map(_Keep(values))
