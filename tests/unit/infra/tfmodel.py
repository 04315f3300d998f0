"""Reading infra/terraform with python-hcl2, so tests can hold Terraform to the code without a terraform binary.

No provider can be downloaded where the tests run, so ``terraform validate``/``plan`` is not available to
them; these helpers parse every .tf file, strip python-hcl2's quoting (it keeps HCL string literals with
their quotes and expressions as ``${...}``), and offer the few evaluations the tests need: substituting known
variables into a template, evaluating a ``validation`` condition for given inputs, and resolving the
``dynamic "statement"`` blocks of an IAM policy document for a given configuration.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2

REPO_ROOT = Path(__file__).resolve().parents[3]
TF_ROOT = REPO_ROOT / "infra" / "terraform"

_INTERP = re.compile(r"\$\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


def unquote(value: Any) -> Any:
    """python-hcl2 8.x output without its quoting: '"x"' -> 'x' (keys too), block markers dropped."""
    if isinstance(value, str):
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


def expr(value: Any) -> str | None:
    """The expression inside a whole-value ``${...}``, or None for a literal."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        inner = value[2:-1]
        if _INTERP.fullmatch(value):
            return inner
    return None


@dataclass
class Module:
    """One Terraform module folder (a child module or a root like envs/dev)."""

    path: Path
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _blocks(self, kind: str) -> Iterator[dict[str, Any]]:
        for doc in self.docs.values():
            yield from doc.get(kind, [])

    @property
    def variables(self) -> dict[str, dict[str, Any]]:
        return {name: body for block in self._blocks("variable") for name, body in block.items()}

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return {name: body for block in self._blocks("output") for name, body in block.items()}

    @property
    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for block in self._blocks("locals"):
            merged.update({k: v for k, v in block.items() if k != "__comments__"})
        return merged

    @property
    def module_calls(self) -> dict[str, dict[str, Any]]:
        return {name: body for block in self._blocks("module") for name, body in block.items()}

    def _typed(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for block in self._blocks(kind):
            for rtype, named in block.items():
                for name, body in named.items():
                    out[(rtype, name)] = body
        return out

    @property
    def resources(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self._typed("resource")

    @property
    def data(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self._typed("data")

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        return self.resources[(rtype, name)]


@cache
def load_module(rel: str) -> Module:
    """Parse one module folder, e.g. ``modules/metering`` or ``envs/dev`` (cached: the tree is read once)."""
    folder = TF_ROOT / rel
    module = Module(folder)
    for path in sorted(folder.glob("*.tf")):
        with path.open(encoding="utf-8") as fh:
            module.docs[path.name] = unquote(hcl2.load(fh))
    if not module.docs:
        raise FileNotFoundError(f"no .tf files in {folder}")
    return module


def module_folders() -> list[str]:
    """Every module folder under infra/terraform, relative (modules/* and envs/*)."""
    return sorted(
        str(p.relative_to(TF_ROOT))
        for p in TF_ROOT.glob("*/*")
        if p.is_dir() and p.parent.name in ("modules", "envs") and any(p.glob("*.tf"))
    )


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``${ref}`` whose ref is in ``values``; fail on any other interpolation."""

    def one(match: re.Match[str]) -> str:
        ref = match.group(1).strip()
        if ref not in values:
            raise KeyError(f"no value for ${{{ref}}} in {template!r}")
        return values[ref]

    return _INTERP.sub(one, template)


# ---------------------------------------------------------------- validation conditions


class _Obj(dict[str, Any]):
    """A dict whose keys read as attributes, like an HCL object (var.event_source.batch_size)."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _Obj(value) if isinstance(value, dict) else value


def _ternaries(text: str) -> str:
    # cond ? a : b  ->  (a) if (cond) else (b), for the simple unnested forms our validations use.
    match = re.fullmatch(r"(.+?)\s\?\s(.+?)\s:\s(.+)", text.strip(), flags=re.S)
    if match is None:
        return text
    cond, yes, no = match.groups()
    return f"(({yes}) if ({cond}) else ({_ternaries(no)}))"


def _hcl_to_python(condition: str) -> str:
    text = condition.strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    text = _ternaries(text)
    text = text.replace("&&", " and ").replace("||", " or ")
    text = re.sub(r"!(?!=)", " not ", text)
    text = re.sub(r"\bnull\b", "None", text)
    text = re.sub(r"\btrue\b", "True", text)
    text = re.sub(r"\bfalse\b", "False", text)
    return _for_expressions(text)


def _for_expressions(text: str) -> str:
    """[for x in xs : f(x)] -> [f(x) for x in xs], with brackets balanced (f may contain lists)."""
    start = text.find("[for ")
    if start < 0:
        return text
    depth = 0
    for end in range(start, len(text)):
        depth += {"[": 1, "]": -1}.get(text[end], 0)
        if depth == 0:
            break
    match = re.fullmatch(r"\[for\s+(\w+)\s+in\s+(.+?)\s:\s(.+)\]", text[start : end + 1], flags=re.S)
    if match is None:
        raise ValueError(f"unsupported for expression in {text!r}")
    name, seq, body = match.groups()
    inner = f"[{_for_expressions(body)} for {name} in {seq}]"
    return text[:start] + inner + _for_expressions(text[end + 1 :])


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "contains": lambda seq, v: v in seq,
    "floor": math.floor,
    "length": len,
    "alltrue": all,
    "values": lambda m: [_Obj(v) if isinstance(v, dict) else v for v in m.values()],
    "keys": lambda m: list(m.keys()),
    "startswith": lambda s, p: s.startswith(p),
    "endswith": lambda s, p: s.endswith(p),
}


def validation_conditions(module: Module, variable: str) -> list[str]:
    return [v["condition"] for v in module.variables[variable].get("validation", [])]


def validation_passes(module: Module, variable: str, value: Any, *, must_mention: str = "") -> bool:
    """Evaluate the variable's validation conditions (those mentioning ``must_mention``) for ``value``."""
    conditions = [c for c in validation_conditions(module, variable) if must_mention in c]
    if not conditions:
        raise AssertionError(f"{module.path.name}: variable {variable!r} has no validation mentioning {must_mention!r}")
    namespace = {"var": _Obj({variable: value}), **_FUNCTIONS, "__builtins__": {}}
    results = []
    for condition in conditions:
        source = _hcl_to_python(condition)
        results.append(bool(eval(source, namespace)))
    return all(results)


# ---------------------------------------------------------------- IAM policy documents


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]  # Terraform expressions and templates, unresolved
    has_principals: bool


def _as_list(value: Any, locals_: Mapping[str, Any]) -> tuple[str, ...]:
    """A list attribute; a whole ``${local.x}`` naming a literal list local is replaced by that list."""
    if isinstance(value, list):
        return tuple(value)
    ref = expr(value) or ""
    if ref.startswith("local.") and isinstance(locals_.get(ref[6:]), list):
        return tuple(locals_[ref[6:]])
    return (value,) if value else ()


def policy_statements(
    doc: Mapping[str, Any], conditions: Mapping[str, bool], locals_: Mapping[str, Any] | None = None
) -> list[Statement]:
    """The statements of an ``aws_iam_policy_document`` for one configuration: static ones, plus each
    ``dynamic "statement"`` whose for_each condition (the text before ``?``) ``conditions`` says is on. An
    unknown condition raises, so a new dynamic statement cannot slip past the tests. ``locals_`` (the
    module's locals) expands actions or resources given as ``${local.x}`` of a literal list."""
    bodies: list[dict[str, Any]] = list(doc.get("statement", []))
    for block in doc.get("dynamic", []):
        for name, dyn in block.items():
            assert name == "statement", name
            for_each = expr(dyn["for_each"]) or ""
            match = re.fullmatch(r"(.+?) \? (\[[^\]]*\]) : (\[[^\]]*\])", for_each)
            if match is None:
                raise AssertionError(f"unrecognised dynamic statement for_each: {for_each!r}")
            cond, _yes, no = match.groups()
            if cond not in conditions:
                raise KeyError(f"no value for dynamic statement condition {cond!r}")
            on = conditions[cond] if no == "[]" else not conditions[cond]
            if on:
                bodies.extend(dyn["content"])
    out = []
    for body in bodies:
        out.append(
            Statement(
                sid=body.get("sid", ""),
                effect=body.get("effect", "Allow"),
                actions=_as_list(body.get("actions"), locals_ or {}),
                resources=_as_list(body.get("resources"), locals_ or {}),
                has_principals=bool(body.get("principals")),
            )
        )
    return out


def dynamic_conditions(doc: Mapping[str, Any]) -> list[str]:
    """The for_each conditions of a policy document's dynamic statements (as policy_statements reads them)."""
    out = []
    for block in doc.get("dynamic", []):
        for dyn in block.values():
            match = re.fullmatch(r"(.+?) \? (\[[^\]]*\]) : (\[[^\]]*\])", expr(dyn["for_each"]) or "")
            if match is None:
                raise AssertionError(f"unrecognised dynamic statement for_each: {dyn['for_each']!r}")
            out.append(match.group(1))
    return out


def all_policy_documents() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(module folder, document name, body) of every aws_iam_policy_document in the tree."""
    for rel in module_folders():
        for (dtype, name), body in load_module(rel).data.items():
            if dtype == "aws_iam_policy_document":
                yield rel, name, body
