"""The Terraform tree follows the house layout: every module has main/variables/outputs/versions, every
variable and output is described and typed (never ``any``), and envs/dev documents what it takes and gives."""

from __future__ import annotations

import re

import pytest

from tests.unit.infra.tfmodel import TF_ROOT, load_module, module_folders

CHILD_MODULES = [rel for rel in module_folders() if rel.startswith("modules/")]


def test_the_tree_has_the_components_the_issue_asks_for() -> None:
    names = {rel.split("/", 1)[1] for rel in CHILD_MODULES}
    assert {"stream", "alerts", "state", "metering", "gateway", "reporting", "monitoring", "kms"} <= names
    assert "envs/dev" in module_folders()


@pytest.mark.parametrize("rel", CHILD_MODULES)
def test_each_module_has_the_four_files(rel: str) -> None:
    for required in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
        assert (TF_ROOT / rel / required).is_file(), f"{rel} lacks {required}"


@pytest.mark.parametrize("rel", module_folders())
def test_variables_are_described_and_typed_without_any(rel: str) -> None:
    module = load_module(rel)
    for name, body in module.variables.items():
        assert len(body.get("description", "")) > 10, f"{rel}: variable {name} has no real description"
        var_type = body.get("type")
        assert var_type, f"{rel}: variable {name} has no type"
        assert not re.search(r"\bany\b", var_type), f"{rel}: variable {name} is typed with any"


@pytest.mark.parametrize("rel", module_folders())
def test_outputs_are_described(rel: str) -> None:
    for name, body in load_module(rel).outputs.items():
        assert len(body.get("description", "")) > 10, f"{rel}: output {name} has no real description"


@pytest.mark.parametrize("rel", module_folders())
def test_versions_pin_terraform_and_the_aws_provider(rel: str) -> None:
    module = load_module(rel)
    blocks = [b for doc in module.docs.values() for b in doc.get("terraform", [])]
    assert blocks, f"{rel} has no terraform block"
    (block,) = blocks
    assert block["required_version"].startswith(">=")
    (providers,) = block["required_providers"]
    assert providers["aws"]["source"] == "hashicorp/aws"


def test_dev_readme_documents_every_variable_and_output_and_the_api_choice() -> None:
    readme = (TF_ROOT / "envs" / "dev" / "README.md").read_text(encoding="utf-8")
    dev = load_module("envs/dev")
    for name in dev.variables:
        assert f"`{name}`" in readme, f"README does not describe variable {name}"
    for name in dev.outputs:
        assert f"`{name}`" in readme, f"README does not describe output {name}"
    for heading in ("## Deploy", "## Which API", "## Variables", "## Outputs", "## Cost notes"):
        assert heading in readme
    assert "HTTP API" in readme and "usage plans" in readme


def test_dev_calls_every_child_module() -> None:
    sources = {body["source"] for body in load_module("envs/dev").module_calls.values()}
    called = {s.removeprefix("../../") for s in sources}
    # lambda_function and bucket are used by the component modules, not by the root directly.
    indirect = {"modules/lambda_function", "modules/bucket"}
    assert set(CHILD_MODULES) - indirect <= called
