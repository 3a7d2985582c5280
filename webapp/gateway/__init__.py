"""The SMS gateway: one small interface, two implementations chosen by `SMS_GATEWAY`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import SendResult, SmsGateway
from .simulated import SimulatedGateway


def build_gateway(cfg: Mapping[str, Any]) -> SmsGateway:
    """The gateway the configuration asks for (config.resolve_gateway has validated the choice)."""
    if cfg["SMS_GATEWAY"] == "vonage":
        from .vonage import VonageGateway

        return VonageGateway(
            api_key=cfg["VONAGE_API_KEY"],
            api_secret=cfg["VONAGE_API_SECRET"],
            rest_host=cfg["VONAGE_REST_HOST"],
            api_host=cfg["VONAGE_API_HOST"],
            timeout=cfg["VONAGE_TIMEOUT"],
        )
    return SimulatedGateway()


__all__ = ["SendResult", "SimulatedGateway", "SmsGateway", "build_gateway"]
