"""infra/scripts/package_lambda.py builds the app zip Terraform deploys: it holds every handler Terraform
names, the packaged data, nothing else, and the same bytes on every build (so source_code_hash only changes
when the code does). The dependency layer needs PyPI, so only its pip command is checked here."""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.infra.tfmodel import REPO_ROOT, load_module


def _load_packager() -> ModuleType:
    path = REPO_ROOT / "infra" / "scripts" / "package_lambda.py"
    spec = importlib.util.spec_from_file_location("package_lambda", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["package_lambda"] = module
    spec.loader.exec_module(module)
    return module


packager = _load_packager()


@pytest.fixture(scope="module")
def app_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out: Path = packager.build_app_zip(tmp_path_factory.mktemp("dist") / "app.zip")
    return out


def names(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        return set(archive.namelist())


def test_app_zip_holds_every_handler_terraform_names(app_zip: Path) -> None:
    inside = names(app_zip)
    for rel in ("modules/metering", "modules/gateway", "modules/reporting"):
        handler = load_module(rel).module_calls["function"]["handler"]
        module_path = handler.rpartition(".")[0].replace(".", "/") + ".py"
        assert module_path in inside, f"{handler}: {module_path} is not in app.zip"


def test_app_zip_holds_the_packages_and_data_and_nothing_else(app_zip: Path) -> None:
    inside = names(app_zip)
    assert {"shared/__init__.py", "shared/settings.py", "shared/data/pricing.json"} <= inside
    assert {"producers/__init__.py", "consumers/__init__.py"} <= inside
    assert {name.split("/")[0] for name in inside} == {"shared", "producers", "consumers"}
    assert not [n for n in inside if "__pycache__" in n or n.endswith((".pyc", ".pyo")) or "/tests/" in n]


def test_app_zip_is_byte_identical_across_builds(app_zip: Path, tmp_path: Path) -> None:
    again = packager.build_app_zip(tmp_path / "app.zip")
    assert again.read_bytes() == app_zip.read_bytes()


def test_layer_is_built_for_the_lambda_platform_without_what_the_runtime_ships() -> None:
    requirements = packager.layer_requirements()
    names_only = {packager._requirement_name(r) for r in requirements}
    assert {"aws-kinesis-agg", "aws-lambda-powertools", "redis", "protobuf", "six"} <= names_only
    assert not names_only & {"boto3", "botocore", "rich"}
    command = packager.pip_command(requirements, Path("/tmp/layer"))
    joined = " ".join(command)
    for flag in ("--platform manylinux2014_x86_64", "--python-version 3.11", "--implementation cp"):
        assert flag in joined
    assert "--only-binary=:all:" in command
    assert command[command.index("--target") + 1] == "/tmp/layer"


def test_terraform_reads_the_zips_where_the_packager_writes_them() -> None:
    dev = load_module("envs/dev")
    assert dev.locals["app_zip"].endswith('"${local.repo_root}/dist/lambda/app.zip")}')
    assert dev.locals["deps_layer_zip"].endswith('"${local.repo_root}/dist/lambda/deps-layer.zip")}')
    code = load_module("modules/lambda_code")
    layer = code.resource("aws_lambda_layer_version", "deps")
    assert layer["source_code_hash"] == "${filebase64sha256(var.deps_layer_zip)}"
    assert code.outputs["app_zip_hash"]["value"] == "${filebase64sha256(var.app_zip)}"
    function = load_module("modules/lambda_function").resource("aws_lambda_function", "this")
    assert function["source_code_hash"] == "${var.code.app_zip_hash}"
