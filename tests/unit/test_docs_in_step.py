"""The README must stay true: its configuration table lists exactly the variables the settings code reads."""

from __future__ import annotations

import re
from pathlib import Path

import consumers.metering.settings
import consumers.reporting.settings
import producers.gateway.settings
from shared.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")

_ = (consumers.metering.settings, consumers.reporting.settings, producers.gateway.settings)


def test_readme_configuration_table_matches_the_settings_code() -> None:
    documented = dict(re.findall(r"^\| `(TM_[A-Z_]+)` \| ([a-z, ]+) \|", README, flags=re.MULTILINE))
    assert set(documented) == set(ENV_VARS), "README configuration table and shared.settings.ENV_VARS differ"
    for name, components in documented.items():
        assert set(components.replace(" ", "").split(",")) == set(ENV_VARS[name][0]), name


def test_readme_tells_a_new_user_the_two_commands() -> None:
    assert "make demo" in README
    assert "make test" in README
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
