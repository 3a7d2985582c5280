"""Dashboard blueprint: pages and htmx fragments for signed-in operators."""

from __future__ import annotations

from flask import Blueprint, Flask

from .extensions import db, login_manager
from .models import Operator

bp = Blueprint("dashboard", __name__)


@login_manager.user_loader
def _load_operator(operator_id: str) -> Operator | None:
    try:
        return db.session.get(Operator, int(operator_id))
    except ValueError:
        return None


@bp.get("/")
def index():
    return "SMS proxy is running. The dashboard is not built yet.", 200


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
