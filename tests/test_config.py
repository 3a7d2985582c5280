"""The configuration contract: names, conversion, documentation."""

from pathlib import Path

import pytest

from webapp.config import DEFAULTS, ConfigError, from_env, resolve_gateway

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_documents_every_setting_with_a_comment():
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}
    assert set(DEFAULTS) <= names, sorted(set(DEFAULTS) - names)
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert any(lines[j].startswith("#") for j in range(max(i - 3, 0), i)), line


def test_env_example_values_parse():
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    cfg = from_env(values)
    assert cfg["PORT"] == 3000
    assert cfg["VONAGE_MAX_SENDS_PER_SECOND"] == 30.0
    assert cfg["MASK_NUMBERS_IN_UI"] is True


def test_from_env_converts_and_reports_bad_values():
    assert from_env({"PORT": "8080", "AUTO_REPLY": "false"}) == {"PORT": 8080, "AUTO_REPLY": False}
    with pytest.raises(ConfigError, match="PORT"):
        from_env({"PORT": "eighty"})


def test_gateway_choice():
    assert resolve_gateway({}) == "simulated"
    assert resolve_gateway({"VONAGE_API_KEY": "k", "VONAGE_API_SECRET": "s"}) == "vonage"
    with pytest.raises(ConfigError, match="must be 'vonage' or 'simulated'"):
        resolve_gateway({"SMS_GATEWAY": "twilio"})
