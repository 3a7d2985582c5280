"""Dashboard pages and their htmx fragments. Views stay thin: parse, one service or query call, render.

Each fragment has one template (`dashboard/_*.html`), included by its page and returned alone when the
page re-fetches it after a live doorbell (docs/architecture.md).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import audit, queries, search, services
from ..callbacks import delivery_health
from ..extensions import db
from ..models import Chat
from ..services.chats import mark_read, validate_chat_request
from ..services.optouts import count_opt_outs
from ..services.outbound import resend_message
from ..states import Actor

bp = Blueprint("dashboard", __name__)

PAIR_FIELDS = ("a", "b", "a_label", "b_label", "reference", "expires_in", "idle_timeout")
COMPOSE_FIELDS = ("to", "text")
TABS = ("active", "ended")
# The pair form's lifetime choices, in seconds (the API takes any value from 60 to 31,536,000).
EXPIRY_CHOICES = (3600, 2 * 3600, 4 * 3600, 8 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)
IDLE_CHOICES = (600, 1800, 3600, 2 * 3600, 4 * 3600, 86400)


def _actor() -> str:
    """The signed-in dispatcher, as the audit trail names them."""
    return Actor.operator(current_user.name)


def _field_errors(exc: services.ServiceError, fields: tuple[str, ...]) -> dict[str, str]:
    """A service error shown next to its field ("a: '123' is not..." -> "'123' is not..." under field a)."""
    field = exc.field if exc.field in fields else "form"
    message = exc.message.split(": ", 1)[1] if exc.message.startswith(f"{field}: ") else exc.message
    return {field: message}


def _htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def _int_arg(name: str, default: int = 1) -> int:
    try:
        return max(int(request.args.get(name, default)), 1)
    except ValueError:
        return default


def _list_args() -> dict:
    tab = request.args.get("tab", "active")
    return {
        "tab": tab if tab in TABS else "active",
        "q": (request.args.get("q") or "").strip()[:100],
        "page": _int_arg("page"),
    }


def _chat_list_context() -> dict:
    args = _list_args()
    return {
        "args": args,
        # a search looks in both tabs at once (each row says which holds it); no search: the tab's chats
        "result": search.find_chats(args["q"], args["page"])
        if args["q"]
        else queries.search_chats(args["tab"], args["page"]),
        "counts": {tab: queries.count_chats(tab) for tab in TABS},
    }


def _get_chat(chat_id: int) -> Chat:
    chat = db.session.get(Chat, chat_id)
    if chat is None:
        abort(404)
    return chat


# ------------------------------------------------------------------ chats list and pairing


@bp.app_context_processor
def _pair_choices() -> dict:
    return {"EXPIRY_CHOICES": EXPIRY_CHOICES, "IDLE_CHOICES": IDLE_CHOICES}


@bp.get("/")
def chats():
    return render_template("dashboard/chats.html", form={}, errors={}, **_chat_list_context())


@bp.get("/fragments/chats")
def chat_list():
    return render_template("dashboard/_chat_list.html", **_chat_list_context())


@bp.post("/chats")
def pair():
    form = {f: (request.form.get(f) or "") for f in PAIR_FIELDS}
    errors: dict[str, str] = {}
    created = None
    pool_full = None  # services.PoolExhausted: _pair_form.html links an admin to the numbers page
    try:
        req = validate_chat_request(**{f: form[f] for f in PAIR_FIELDS})
        created = services.start_chat(req, created_by=current_user.name, actor=_actor())
    except services.ServiceError as exc:
        errors = _field_errors(exc, PAIR_FIELDS)
        pool_full = exc if isinstance(exc, services.PoolExhausted) else None
    status = 422 if errors else 200
    if _htmx():
        return render_template(
            "dashboard/_pair_form.html", form={} if created else form, errors=errors, created=created,
            pool_full=pool_full,
        ), status
    if created:
        flash(f"Chat {created.id} started on {created.proxy_number}.")
        return redirect(url_for("dashboard.chats"))
    return render_template(
        "dashboard/chats.html", form=form, errors=errors, pool_full=pool_full, **_chat_list_context()
    ), status


# ------------------------------------------------------------------ one chat


@bp.get("/chats/<int:chat_id>")
def chat(chat_id: int):
    chat = _get_chat(chat_id)
    return render_template("dashboard/chat.html", chat=chat, entries=queries.transcript(chat_id))


@bp.get("/chats/<int:chat_id>/header")
def chat_header(chat_id: int):
    return render_template("dashboard/_chat_header.html", chat=_get_chat(chat_id))


@bp.get("/chats/<int:chat_id>/transcript")
def chat_transcript(chat_id: int):
    chat = _get_chat(chat_id)
    return render_template("dashboard/_transcript.html", chat=chat, entries=queries.transcript(chat_id))


@bp.get("/chats/<int:chat_id>/messages/<int:message_id>")
def chat_entry(chat_id: int, message_id: int):
    chat = _get_chat(chat_id)
    entry = queries.entry_for(chat_id, message_id)
    if entry is None:
        abort(404)
    return render_template("dashboard/_entry.html", chat=chat, entry=entry)


@bp.post("/chats/<int:chat_id>/read")
def chat_read(chat_id: int):
    """The chat is open on a dispatcher's screen: clear its unread marker."""
    mark_read(chat_id)
    return "", 204


@bp.post("/chats/<int:chat_id>/end")
def end(chat_id: int):
    try:
        services.end_chat(chat_id, reason="operator", actor=_actor())
    except services.NotFound:
        abort(404)
    except services.Conflict as exc:
        flash(exc.message)
    return redirect(url_for("dashboard.chat", chat_id=chat_id))


@bp.post("/chats/<int:chat_id>/messages")
def compose(chat_id: int):
    """The dispatcher's own SMS to one or both parties (the compose box on the chat page)."""
    form = {f: (request.form.get(f) or "") for f in COMPOSE_FIELDS}
    errors: dict[str, str] = {}
    sent = []
    try:
        sent = services.send_operator_message(chat_id, form["to"], form["text"], actor=_actor())
    except services.NotFound:
        abort(404)
    except services.ServiceError as exc:
        errors = _field_errors(exc, COMPOSE_FIELDS)
    if not _htmx():
        for message in errors.values():
            flash(message)
        return redirect(url_for("dashboard.chat", chat_id=chat_id))
    chat = _get_chat(chat_id)
    kept = form if errors else {"to": form["to"], "text": ""}
    return render_template(
        "dashboard/_compose.html", chat=chat, form=kept, errors=errors, sent=sent
    ), (422 if errors else 200)


@bp.get("/chats/<int:chat_id>/transcript.csv")
def transcript_csv(chat_id: int):
    try:
        chat, text = services.transcript_csv(chat_id, actor=_actor())
    except services.NotFound:
        abort(404)
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="chat-{chat.id}-transcript.csv"'},
    )


@bp.post("/messages/<int:message_id>/resend")
def resend(message_id: int):
    """Queue a failed message again; the transcript line updates through the live doorbell."""
    try:
        copy = resend_message(message_id, requested_by=current_user.name, actor=_actor())
    except services.NotFound:
        abort(404)
    except services.Conflict as exc:
        flash(exc.message)
        copy = None
    chat_id = copy.chat_id if copy else request.form.get("chat_id", type=int)
    if chat_id is None:
        return redirect(url_for("dashboard.unrouted"))
    return redirect(url_for("dashboard.chat", chat_id=chat_id))


# ------------------------------------------------------------------ unrouted and numbers


def unrouted_context() -> dict:
    """The Unrouted list: all texts, or (`show=open`) those no dispatcher has handled yet."""
    show = "open" if request.args.get("show") == "open" else "all"
    return {
        "result": queries.unrouted(_int_arg("page"), only_unhandled=show == "open"),
        "show": show,
        "unhandled": queries.count_unhandled_unrouted(),
    }


@bp.get("/unrouted")
def unrouted():
    return render_template("dashboard/unrouted.html", **unrouted_context())


@bp.get("/fragments/unrouted")
def unrouted_list():
    return render_template("dashboard/_unrouted_list.html", **unrouted_context())


@bp.get("/numbers")
def numbers():
    return render_template("dashboard/numbers.html", pool=queries.pool_load())


@bp.get("/fragments/numbers")
def numbers_table():
    return render_template("dashboard/_numbers.html", pool=queries.pool_load())


@bp.get("/activity")
def activity():
    """The audit trail, newest first, 50 to a page (`before=<id>` pages back)."""
    before = request.args.get("before", type=int)
    events = audit.recent(50, before=before, chat_id=request.args.get("chat", type=int))
    return render_template("dashboard/activity.html", events=events, before=before)


@bp.get("/opt-outs")
def opt_outs():
    page = _int_arg("page")
    rows = services.list_opt_outs(limit=50, offset=(page - 1) * 50)
    return render_template("dashboard/opt_outs.html", rows=rows, page=page, total=count_opt_outs(), per_page=50)


@bp.get("/fragments/nav")
def nav_counts():
    return render_template("_nav_counts.html")


@bp.app_context_processor
def _nav_counts() -> dict:
    if not current_user.is_authenticated:
        return {}

    def counts() -> dict:
        return {"unrouted_open": queries.count_unhandled_unrouted()}

    return {"nav_counts": counts}


@bp.app_context_processor
def _events_health() -> dict:
    """`events_health()` for the banner in base.html: are deliveries to EVENTS_URL failing?"""
    if not current_user.is_authenticated:
        return {}

    def health() -> dict | None:
        try:
            return delivery_health()
        except Exception:  # a banner must never break a page
            db.session.rollback()
            return None

    return {"events_health": health}
