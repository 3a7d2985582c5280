"""Why a text was not delivered, in words a dispatcher can act on.

Vonage reports a failure in one of two places (docs/vonage.md §1.1 and §4; the whole table, with its sources, is
docs/vonage-errors.md):
- the send API's answer: `status` (0 accepted; 1-33 refused, e.g. 7 "Number Barred");
- a delivery receipt, later: `status` failed/expired/rejected with an `err-code` (0 delivered; 1-16, 50-54 and 99
  say why not, e.g. 6 "Anti-Spam Rejection").

`explain_receipt(code)` and `explain_send_status(code)` turn a code into an `Explanation`: a sentence saying what
happened and a suggestion saying what the dispatcher can do. A code missing from the table still gets a
sentence that names it. `explain(error)` reads the reason the outbox stored on a message (models.Message.error,
written by outbox/sender.py and outbox/delivery.py) and explains it.

A leaf module: pure data and functions, no Flask, no database. Everyone may import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RECEIPT = "delivery_receipt"  # the code came in a delivery receipt's err-code
SEND = "send"  # the code came in the send API's answer (status)
TRANSPORT = "transport"  # no code: the request did not get a clear answer (timeout, HTTP error, crash)


@dataclass(frozen=True)
class Explanation:
    """What went wrong (`summary`, one sentence) and what a dispatcher can do about it (`suggestion`).

    `code` is Vonage's code as a number (None when there is none), `source` where it came from (RECEIPT, SEND,
    TRANSPORT), `name` Vonage's own name for it ("Anti-Spam Rejection"), `temporary` whether the same text may
    well go through if sent again later.
    """

    source: str
    code: int | None
    name: str
    summary: str
    suggestion: str
    temporary: bool = False

    @property
    def label(self) -> str:
        """Where the code came from, for people: "err-code 6", "send status 7", ""."""
        if self.code is None:
            return ""
        return f"err-code {self.code}" if self.source == RECEIPT else f"send status {self.code}"

    @property
    def sentence(self) -> str:
        """"The number is not reachable: check it with the customer." (summary: suggestion)."""
        return f"{self.summary.rstrip('.')}: {self.suggestion[:1].lower()}{self.suggestion[1:]}"

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "code": self.code,
            "name": self.name,
            "summary": self.summary,
            "suggestion": self.suggestion,
            "temporary": self.temporary,
        }


def _e(source: str, code: int, name: str, summary: str, suggestion: str, temporary: bool = False) -> Explanation:
    return Explanation(source, code, name, summary, suggestion, temporary)


_CHECK_NUMBER = "Check the number with the person (by phone or e-mail), then pair them again with the right one"
_TRY_LATER = "Resend it later, or reach them another way if it is urgent"
_SUPPORT = "Resend it once; if it fails again, tell whoever runs the Vonage account (it may need Vonage support)"
_ADMIN = "Tell whoever runs the Vonage account; resending will fail the same way until it is fixed"

# Delivery-receipt err-codes (Vonage, "Delivery receipts" guide, DLR error codes).
RECEIPT_ERRORS: dict[int, Explanation] = {e.code: e for e in (  # type: ignore[misc]
    _e(RECEIPT, 0, "Delivered", "The text was delivered.", "Nothing to do"),
    _e(RECEIPT, 1, "Unknown", "The carrier refused the text without saying why; often the number does not exist.",
       _CHECK_NUMBER),
    _e(RECEIPT, 2, "Absent Subscriber - Temporary",
       "The phone is switched off or out of coverage.", _TRY_LATER, temporary=True),
    _e(RECEIPT, 3, "Absent Subscriber - Permanent", "The number is no longer in service.",
       "Ask the person for a number that works, then pair them again"),
    _e(RECEIPT, 4, "Call Barred by User", "The person has blocked texts like this one on their line.",
       "Reach them another way; only they (through their carrier) can lift the block"),
    _e(RECEIPT, 5, "Portability Error",
       "The number moved to another carrier and the text could not follow it.",
       "Resend it later; if it keeps failing, reach them another way", temporary=True),
    _e(RECEIPT, 6, "Anti-Spam Rejection",
       "The carrier's spam filter blocked the text (its wording or our sender number).",
       "Rephrase it without links or sales words and resend; if it keeps failing, tell whoever runs the "
       "Vonage account"),
    _e(RECEIPT, 7, "Handset Busy", "The phone was busy and could not take the text.", _TRY_LATER, temporary=True),
    _e(RECEIPT, 8, "Network Error", "The carrier's network failed while delivering the text.",
       "Resend it in a few minutes", temporary=True),
    _e(RECEIPT, 9, "Illegal Number",
       "The person's carrier refuses our texts to this number (typically after they opted out).",
       "Do not resend; reach them another way"),
    _e(RECEIPT, 10, "Illegal Message", "The carrier could not handle the text's format.",
       "Rewrite it in plain characters and send it again"),
    _e(RECEIPT, 11, "Unroutable", "Vonage has no route to this number's network.",
       "Check the number with the person; if it is right, tell whoever runs the Vonage account"),
    _e(RECEIPT, 12, "Destination Unreachable", "The number is not reachable.",
       "Check it with the person, then resend"),
    _e(RECEIPT, 13, "Subscriber Age Restriction",
       "The carrier blocked the text because of an age restriction on the person's line.",
       "Reach them another way"),
    _e(RECEIPT, 14, "Number Blocked by Carrier",
       "The person's carrier blocked the text (their plan may not include texts, or the line is suspended).",
       "Reach them another way"),
    _e(RECEIPT, 15, "Prepaid Insufficient Funds",
       "The person's prepaid line has no credit to receive the text.",
       "Resend it later, or reach them another way", temporary=True),
    _e(RECEIPT, 16, "Gateway Quota Exceeded", "A quota on the route to this number was exceeded.",
       "Resend it in a few minutes; if it keeps failing, tell whoever runs the Vonage account", temporary=True),
    _e(RECEIPT, 50, "Entity Filter",
       "The destination country's registration filter refused our registered entity.", _ADMIN),
    _e(RECEIPT, 51, "Header Filter",
       "The destination country's registration filter refused our sender (header).", _ADMIN),
    _e(RECEIPT, 52, "Content Filter",
       "The destination country's registration filter refused the wording (no registered template matched).",
       _ADMIN),
    _e(RECEIPT, 53, "Consent Filter",
       "The destination country's registration filter found no recorded consent from the person.", _ADMIN),
    _e(RECEIPT, 54, "Regulation Error",
       "The text broke a regulation of the destination country.", _ADMIN),
    _e(RECEIPT, 99, "General Error", "The route to this number failed.", _SUPPORT, temporary=True),
)}

# Send-API statuses (Vonage, "Troubleshooting SMS" and "API Errors > SMS API").
SEND_STATUSES: dict[int, Explanation] = {e.code: e for e in (  # type: ignore[misc]
    _e(SEND, 0, "Success", "Vonage accepted the text for delivery.", "Nothing to do"),
    _e(SEND, 1, "Throttled", "We sent faster than the Vonage account allows.",
       "Resend it; the app slows down by itself", temporary=True),
    _e(SEND, 2, "Missing Parameters", "Vonage said the request lacked a required field (a fault in this app).",
       "Tell whoever runs this app"),
    _e(SEND, 3, "Invalid Parameters", "Vonage refused a value of the request, most often the number.",
       _CHECK_NUMBER),
    _e(SEND, 4, "Invalid Credentials", "Vonage refused our API key or secret.", _ADMIN),
    _e(SEND, 5, "Internal Error", "Vonage had an internal error.", "Resend it in a few minutes", temporary=True),
    _e(SEND, 6, "Invalid Message",
       "Vonage could not process the text, for example because the number's prefix is not recognised.",
       _CHECK_NUMBER),
    _e(SEND, 7, "Number Barred", "This number is barred from receiving our texts.",
       "Do not resend; reach the person another way"),
    _e(SEND, 8, "Partner Account Barred", "The Vonage account is suspended.", _ADMIN),
    _e(SEND, 9, "Partner Quota Violation", "The Vonage account has run out of credit.",
       "Tell whoever runs the Vonage account to top it up, then resend"),
    _e(SEND, 10, "Too Many Existing Binds", "Too many connections to Vonage at once.",
       "Resend it in a moment", temporary=True),
    _e(SEND, 11, "Account Not Enabled For HTTP", "The Vonage account may not send through this API.", _ADMIN),
    _e(SEND, 12, "Message Too Long", "The text is longer than Vonage accepts.", "Shorten it and send it again"),
    _e(SEND, 14, "Invalid Signature", "Vonage refused the request's signature.", _ADMIN),
    _e(SEND, 15, "Invalid Sender Address", "Vonage refused our proxy number as the sender.", _ADMIN),
    _e(SEND, 22, "Invalid Network Code", "Vonage refused the network chosen for this number.", _ADMIN),
    _e(SEND, 23, "Invalid Callback URL", "Vonage refused the delivery-receipt address.", _ADMIN),
    _e(SEND, 29, "Non-Whitelisted Destination",
       "The Vonage account is a trial account and this number is not on its list of allowed test numbers.",
       "Tell whoever runs the Vonage account to add the number (or upgrade the account)"),
    _e(SEND, 32, "Signature And API Secret Disallowed",
       "The Vonage account requires signed requests and refused the API secret.", _ADMIN),
    _e(SEND, 33, "Number De-activated", "The number has been de-activated.",
       "Ask the person for a number that works, then pair them again"),
)}

# A delivery receipt's final status without an err-code we know.
_RECEIPT_STATUS_WORDS = {
    "expired": Explanation(RECEIPT, None, "Expired", "The carrier kept trying until the text expired; the phone "
                           "was probably off or out of coverage all that time.", _TRY_LATER, temporary=True),
    "rejected": Explanation(RECEIPT, None, "Rejected", "The carrier rejected the text.", _CHECK_NUMBER),
    "failed": Explanation(RECEIPT, None, "Failed", "The carrier could not deliver the text.", _TRY_LATER),
}

_RECEIPT_CODE = re.compile(r"err-code (\d{1,4})")
_SEND_STATUS = re.compile(r"status (\d{1,4})\b")
_RECEIPT_STATUS = re.compile(r"delivery (failed|expired|rejected)")
_HTTP = re.compile(r"HTTP (\d{3})")


def explain_receipt(code: int | str | None, status: str | None = None) -> Explanation:
    """A delivery receipt's err-code (and status: failed, expired, rejected) in words."""
    number = _as_int(code)
    if number is not None and number in RECEIPT_ERRORS:
        return RECEIPT_ERRORS[number]
    if number is None:
        return _RECEIPT_STATUS_WORDS.get(status or "failed", _RECEIPT_STATUS_WORDS["failed"])
    return Explanation(
        RECEIPT, number, f"err-code {number}",
        f"The carrier could not deliver the text (err-code {number}, a code this app does not know).",
        "Resend it once; if it fails again, look the code up in Vonage's delivery-receipt documentation",
    )


def explain_send_status(code: int | str | None) -> Explanation:
    """The send API's status in words."""
    number = _as_int(code)
    if number is not None and number in SEND_STATUSES:
        return SEND_STATUSES[number]
    shown = code if number is None else number
    return Explanation(
        SEND, number, f"status {shown}",
        f"Vonage refused the text (send status {shown}, a status this app does not know).",
        "Resend it once; if it fails again, look the status up in Vonage's SMS API errors",
    )


def explain(error: str | None) -> Explanation | None:
    """The reason the outbox stored on a message, explained; None when there is nothing to explain.

    Reads the formats written by the outbox: "delivery failed (err-code 6)" (outbox/delivery.py), "status 7:
    Number barred" (gateway/vonage.py, possibly after "gave up after N attempts: "), "HTTP 503", "no answer:
    ReadTimeout", "interrupted while sending ...". When several parts failed with different codes, the first
    code explains it.
    """
    if not error:
        return None
    if (match := _RECEIPT_CODE.search(error)) and int(match.group(1)) != 0:  # 0 would say "delivered"
        status = _RECEIPT_STATUS.search(error)
        return explain_receipt(match.group(1), status.group(1) if status else None)
    if match := _RECEIPT_STATUS.search(error):
        return explain_receipt(None, match.group(1))
    if match := _SEND_STATUS.search(error):
        return explain_send_status(match.group(1))
    return _transport(error)


def _transport(error: str) -> Explanation:
    low = error.lower()
    if match := _HTTP.search(error):
        code = int(match.group(1))
        if code == 429:
            return Explanation(TRANSPORT, None, "HTTP 429", "Vonage asked us to slow down (HTTP 429).",
                               "Resend it; the app slows down by itself", temporary=True)
        if code >= 500:
            return Explanation(TRANSPORT, None, f"HTTP {code}", f"Vonage was not available (HTTP {code}).",
                               "Resend it in a few minutes", temporary=True)
        return Explanation(TRANSPORT, None, f"HTTP {code}", f"Vonage refused the request (HTTP {code}).", _ADMIN)
    if "connection failed" in low:
        return Explanation(TRANSPORT, None, "Connection failed", "The app could not reach Vonage.",
                           "Resend it in a few minutes; if it keeps failing, check the server's internet "
                           "connection", temporary=True)
    if "no delivery receipt" in low:
        return Explanation(TRANSPORT, None, "No receipt",
                           "An earlier send got no answer and no delivery receipt came, so it was sent again.",
                           "Nothing to do unless the person says it arrived twice", temporary=True)
    if any(word in low for word in ("no answer", "interrupted", "unparseable", "sdk error", "gateway error",
                                    "may or may not")):
        return Explanation(TRANSPORT, None, "No answer",
                           "Vonage did not answer the send, so it may or may not have reached the phone.",
                           "Ask the person whether it arrived before resending", temporary=True)
    return Explanation(TRANSPORT, None, "Send failed", f"The text could not be sent ({error}).",
                       "Resend it once; if it fails again, tell whoever runs this app")


def _as_int(code: int | str | None) -> int | None:
    if code is None or isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    text = str(code).strip()
    return int(text) if text.isdigit() and len(text) <= 4 else None
