"""Admin pages: the number pool (add, remove; the load is on the Numbers page) and operator accounts
(create, disable, enable, reset password, promote, demote).

Only admins (`Operator.is_admin`) reach these routes; a dispatcher gets a 403 page, and base.html and the
Numbers page show the links and controls to admins only. Every action is one call of the same service
function the `flask numbers ...` / `flask operators ...` commands use (services/pool.py, services/operators.py),
which validates, audits (actor: this admin) and commits; the views parse the form and render. CSRF comes from
the app-wide CSRFProtect (every form carries `csrf_token`).

Plain HTML forms (no htmx): success redirects (303) with a flash, an error re-renders the page with the
message next to the field and the service's status (400, 404, 409).
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import queries, services
from ..services import operators as accounts
from ..states import Actor

bp = Blueprint("admin", __name__, url_prefix="/admin")

OPERATOR_ACTIONS = ("disable", "enable", "promote", "demote", "password")


def _actor() -> str:
    return Actor.operator(current_user.name)


@bp.before_request
def _admins_only():
    # The app-wide guard (dashboard/__init__.py) has already sent anonymous visitors to the sign-in page.
    if not getattr(current_user, "is_admin", False):
        abort(403)


@bp.errorhandler(403)
def _forbidden(_exc):
    return render_template("admin/forbidden.html"), 403


# ------------------------------------------------------------------ numbers


def _numbers_page(errors: dict[str, str], form: dict[str, str], status: int):
    return render_template("dashboard/numbers.html", pool=queries.pool_load(), errors=errors, form=form), status


@bp.post("/numbers")
def add_number():
    raw = (request.form.get("number") or "").strip()[:64]  # the error quotes what was typed
    try:
        entry = services.add_number(raw, current_app.config["DEFAULT_REGION"], actor=_actor())
    except services.ServiceError as exc:
        return _numbers_page({"number": exc.message}, {"number": raw}, exc.status)
    flash(f"Added {entry.number} to the pool.")
    return redirect(url_for("dashboard.numbers"), 303)


@bp.post("/numbers/remove")
def remove_number():
    raw = (request.form.get("number") or "").strip()[:64]
    try:
        removed = services.remove_number(raw, current_app.config["DEFAULT_REGION"], actor=_actor())
    except services.ServiceError as exc:
        return _numbers_page({"remove": exc.message}, {}, exc.status)
    flash(f"Removed {removed} from the pool.")
    return redirect(url_for("dashboard.numbers"), 303)


# ------------------------------------------------------------------ operators


def _operators_page(errors: dict[str, str] | None = None, form: dict | None = None, status: int = 200):
    return render_template(
        "admin/operators.html",
        operators=accounts.list_operators(),
        errors=errors or {},
        form=form or {},
        min_password=accounts.MIN_PASSWORD,
    ), status


def _new_password(first: str, second: str) -> str:
    """The password typed twice on a form: the service's rule first, then the two must match."""
    accounts.check_password(first)
    if first != second:
        raise services.InvalidInput("the two passwords do not match", field="password2")
    return first


@bp.get("/operators")
def operators():
    return _operators_page()


@bp.post("/operators")
def create_operator():
    form = {
        "name": (request.form.get("name") or "").strip(),
        "admin": request.form.get("admin") == "on",
    }
    try:
        password = _new_password(request.form.get("password") or "", request.form.get("password2") or "")
        operator = accounts.create_operator(form["name"], password, admin=form["admin"], actor=_actor())
    except services.ServiceError as exc:
        return _operators_page({exc.field or "form": exc.message}, form, exc.status)
    flash(f"Created {'admin' if operator.is_admin else 'dispatcher'} {operator.name}. Give them the password "
          "in person; they can sign in now.")
    return redirect(url_for("admin.operators"), 303)


@bp.post("/operators/<action>")
def operator_action(action: str):
    if action not in OPERATOR_ACTIONS:
        abort(404)
    name = (request.form.get("name") or "").strip()[: accounts.MAX_NAME + 1]  # longer names exist nowhere
    myself = name == current_user.name
    try:
        if action == "disable":
            accounts.disable_operator(name, actor=_actor())
            done = f"Disabled {name}: they are signed out everywhere and cannot sign in."
        elif action == "enable":
            accounts.enable_operator(name, actor=_actor())
            done = f"Enabled {name}: they can sign in again."
        elif action in ("promote", "demote"):
            accounts.set_admin(name, action == "promote", actor=_actor())
            done = f"{name} is {'now an admin' if action == 'promote' else 'no longer an admin'}."
        else:
            password = _new_password(request.form.get("password") or "", request.form.get("password2") or "")
            accounts.reset_password(name, password, actor=_actor())
            done = f"Changed the password of {name}; their sessions have ended."
    except services.ServiceError as exc:
        return _operators_page({"form": exc.message, "row": name}, {}, exc.status)
    flash(done)
    if myself and action in ("disable", "demote", "password"):
        # signed out (disable, password) or no longer allowed here (demote): go where they still may
        return redirect(url_for("dashboard.chats"), 303)
    return redirect(url_for("admin.operators"), 303)
