"""The dispatcher dashboard: sign-in, pages and htmx fragments, the simulator.

`init_app` wires it: blueprints, the Jinja filters, a sign-in guard that protects every endpoint except an
explicit allow-list (so a route added later is private by default), and security headers (a strict CSP).
"""

from __future__ import annotations

from flask import Flask, Response, redirect, request, session, url_for
from flask_login import current_user

from ..admission import SESSION_KEY
from ..extensions import login_manager
from ..gateway.simulated import SimulatedGateway
from ..models import Operator
from ..services.operators import session_operator
from . import admin, auth, display, pages, simulator, unrouted

# Endpoints anyone may reach: the sign-in form, health, static files. Blueprints with their own auth:
# webhooks (Vonage signature) and the JSON API (bearer token).
PUBLIC_ENDPOINTS = {"auth.login", "healthz", "static", "favicon"}
SELF_AUTHENTICATED_BLUEPRINTS = {"webhooks", "api"}

# RFC 9110 §11.6.1: a 401 MUST carry a challenge. The dashboard's scheme is its sign-in form and session cookie;
# a made-up scheme name (no browser shows a password dialog for it) that says where to sign in.
SIGN_IN_CHALLENGE = 'Cookie realm="dashboard", form="/login"'

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@login_manager.user_loader
def _load_operator(operator_id: str) -> Operator | None:
    """Signed in only while the cookie's session row lives (services/operators.py): a copied cookie stops
    working at sign-out, and every session of a disabled operator ends at once."""
    return session_operator(operator_id, session.get(SESSION_KEY))


def _require_operator():
    endpoint = request.endpoint
    if endpoint is None:
        return None  # 404/405 follow
    if endpoint in PUBLIC_ENDPOINTS or endpoint.split(".", 1)[0] in SELF_AUTHENTICATED_BLUEPRINTS:
        return None
    if current_user.is_authenticated:
        return None
    login = url_for("auth.login")
    if request.headers.get("HX-Request"):
        resp = Response("Your session has ended; please sign in again.", status=401)
        resp.headers["HX-Redirect"] = login
        resp.headers["WWW-Authenticate"] = SIGN_IN_CHALLENGE
        return resp
    if request.method != "GET" or request.accept_mimetypes.best == "application/json":
        return Response("Sign in first.", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": SIGN_IN_CHALLENGE})
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _security_headers(resp: Response) -> Response:
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    if request.endpoint != "static" and resp.mimetype == "text/html":
        resp.headers.setdefault("Cache-Control", "no-store")  # pages carry conversations
    return resp


def init_app(app: Flask) -> None:
    # A sign-in lasts SESSION_HOURS from sign-in (a shift), and the cookie is only re-sent when the session
    # changes: otherwise a request in flight during sign-out would answer with the old session's cookie
    # after the sign-out response and sign the browser back in.
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    app.before_request(_require_operator)
    app.after_request(_security_headers)
    display.init_app(app)
    gateway = app.extensions.get("sms_gateway")
    if isinstance(gateway, SimulatedGateway):
        gateway.bind(app)  # so the simulator's phones get delivery receipts, like Vonage's
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(simulator.bp)
    app.register_blueprint(unrouted.bp)
    app.register_blueprint(admin.bp)

    @app.get("/favicon.ico")
    def favicon():
        """Browsers ask for it on every site, whatever the page links; pages link static/favicon.svg."""
        return app.send_static_file("favicon.ico")
