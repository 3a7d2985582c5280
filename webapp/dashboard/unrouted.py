"""Acting on unrouted texts: mark one handled, or start a chat with its sender (services/unrouted.py).

The list itself is a page of pages.py (`dashboard.unrouted`); these are its actions. Views stay thin.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import services
from ..services import unrouted as unrouted_texts
from ..states import Actor
from .pages import PAIR_FIELDS, _field_errors, unrouted_context

bp = Blueprint("unrouted", __name__)

# the pair form's fields when person A is the sender of an unrouted text (their number comes from the text)
FIELDS = tuple(f for f in PAIR_FIELDS if f != "a")


def _actor() -> str:
    return Actor.operator(current_user.name)


def _list_args() -> dict:
    return {k: v for k in ("page", "show") if (v := request.args.get(k))}


@bp.post("/unrouted/<int:message_id>/handled")
def handled(message_id: int):
    try:
        unrouted_texts.mark_handled(message_id, actor=_actor())
    except services.NotFound:
        abort(404)
    if request.headers.get("HX-Request"):
        return render_template("dashboard/_unrouted_list.html", **unrouted_context())
    return redirect(url_for("dashboard.unrouted", **_list_args()))


def _page(msg, form: dict, errors: dict, status: int = 200):
    chat = services.get_chat(msg.last_chat_id) if msg.last_chat_id else None
    return render_template(
        "dashboard/unrouted_pair.html", text=msg, chat=chat, form=form, errors=errors
    ), status


@bp.get("/unrouted/<int:message_id>/pair")
def pair(message_id: int):
    """The pair form with the text's sender as person A; the dispatcher chooses person B."""
    try:
        msg = unrouted_texts.unrouted_text(message_id)
    except services.NotFound:
        abort(404)
    form: dict = {}
    if msg.last_chat_id:  # keep how the earlier chat named them ("Customer")
        earlier = services.get_chat(msg.last_chat_id)
        form["a_label"] = earlier.a_label if earlier.a_number == msg.from_number else earlier.b_label
    return _page(msg, form, {})


@bp.post("/unrouted/<int:message_id>/pair")
def start(message_id: int):
    form = {f: (request.form.get(f) or "") for f in FIELDS}
    try:
        chat = unrouted_texts.start_chat_from(message_id, form, operator=current_user.name, actor=_actor())
    except services.NotFound:
        abort(404)  # no such unrouted text (the only NotFound on this path)
    except services.ServiceError as exc:
        return _page(unrouted_texts.unrouted_text(message_id), form, _field_errors(exc, PAIR_FIELDS), 422)
    flash(f"Chat {chat.id} started on {chat.proxy_number}; the text is marked handled.")
    return redirect(url_for("dashboard.chat", chat_id=chat.id))
