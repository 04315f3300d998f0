"""Static check of the Terraform tree (no terraform binary or provider can be downloaded here).

Parses every .tf file with python-hcl2, and checks the house rules that a parse can see: every variable has a
description and a type, no variable is typed `any`, every output has a description, and every module folder
has main.tf, variables.tf, outputs.tf and versions.tf. Exits non-zero naming each file and problem.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hcl2


def check(root: Path) -> list[str]:
    problems: list[str] = []
    files = sorted(root.rglob("*.tf"))
    for path in files:
        if ".terraform" in path.parts:
            continue
        try:
            with path.open(encoding="utf-8") as fh:
                doc: dict[str, Any] = hcl2.load(fh)
        except Exception as exc:  # hcl2 raises lark errors of several kinds
            problems.append(f"{path}: does not parse: {str(exc).splitlines()[0]}")
            continue
        for block in doc.get("variable", []):
            for name, body in block.items():
                if not body.get("description"):
                    problems.append(f"{path}: variable {name!r} has no description")
                var_type = body.get("type")
                if var_type is None:
                    problems.append(f"{path}: variable {name!r} has no type")
                elif "any" in str(var_type).replace('"', " ").split():
                    problems.append(f"{path}: variable {name!r} is typed with `any`")
        for block in doc.get("output", []):
            for name, body in block.items():
                if not body.get("description"):
                    problems.append(f"{path}: output {name!r} has no description")
    modules = root / "modules"
    if modules.is_dir():
        for module in sorted(p for p in modules.iterdir() if p.is_dir()):
            for required in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
                if not (module / required).is_file():
                    problems.append(f"{module}: missing {required}")
    print(f"tfcheck: parsed {len(files)} .tf files under {root}, {len(problems)} problems")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "infra/terraform")
    problems = check(root)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
