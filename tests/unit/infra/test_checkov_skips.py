"""Every checkov check we skip says why, next to the resource it skips (no silent skips, no skip list
elsewhere)."""

from __future__ import annotations

import re

from tests.unit.infra.tfmodel import TF_ROOT

SKIP = re.compile(r"#\s*checkov:skip=(?P<check>[A-Z0-9_]+)(?::(?P<reason>.*))?$")


def skips() -> list[tuple[str, int, str, str]]:
    found = []
    for path in sorted(TF_ROOT.rglob("*.tf")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "checkov:skip" in line:
                match = SKIP.search(line.strip())
                assert match, f"{path}:{lineno}: malformed checkov skip: {line.strip()}"
                found.append((f"{path.relative_to(TF_ROOT)}:{lineno}", match["check"], match["reason"] or "", line))
    return found


def test_every_skip_names_a_check_and_gives_a_reason() -> None:
    found = skips()
    assert found, "expected the documented skips (e.g. CKV_AWS_309 on the gateway route)"
    for where, check, reason, _ in found:
        assert re.fullmatch(r"CKV2?_AWS_\d+", check), f"{where}: {check} is not a checkov AWS check id"
        assert len(reason.split()) >= 8, f"{where}: skip of {check} needs a written reason, got {reason!r}"


def test_no_check_is_skipped_globally() -> None:
    for path in TF_ROOT.rglob("*"):
        assert path.name not in (".checkov.yaml", ".checkov.yml"), f"{path}: skips belong next to the resource"
