"""Build the two zips every tenantmeter Lambda is deployed from, before `terraform apply`.

Terraform cannot reliably pip-install at apply time (a CI runner or a locked-down build host may have no
network then), so packaging is a separate, repeatable step whose outputs Terraform references by path
(module lambda_code, variable lambda_package in envs/dev) and hashes (source_code_hash):

- ``dist/lambda/app.zip``: the packages ``shared/`` (with ``shared/data``), ``producers/`` and ``consumers/``,
  as the handlers import them (``consumers.metering.handler.lambda_handler`` and so on). No tests, no caches.
- ``dist/lambda/deps-layer.zip``: the runtime dependencies from pyproject.toml, installed with
  ``pip install --target python/ --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp
  --only-binary=:all:`` so that the wheels match the Lambda python3.11 x86_64 runtime whatever machine builds
  them. boto3 is left out (the runtime ships it) and so are CLI-only libraries.

Both zips are deterministic (sorted entries, fixed timestamps and modes): building twice from the same tree
gives the same bytes, so Terraform redeploys only when the code changed.

Usage: python infra/scripts/package_lambda.py [--app-only] [--out dist/lambda]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
APP_PACKAGES: Final = ("shared", "producers", "consumers")
# Files of the packages that a function never needs.
EXCLUDED_DIRS: Final = frozenset({"__pycache__", "tests", ".mypy_cache", ".pytest_cache"})
EXCLUDED_SUFFIXES: Final = (".pyc", ".pyo")
# Dependencies the layer leaves out: boto3 (and botocore) come with the Lambda runtime; rich serves the CLI only.
LAYER_EXCLUDED: Final = frozenset({"boto3", "botocore", "rich"})
LAMBDA_PLATFORM: Final = "manylinux2014_x86_64"
LAMBDA_PYTHON: Final = "3.11"
# 1980-01-01, the earliest time a zip entry can carry: fixed so that rebuilds are byte-identical.
ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)


def app_files(repo_root: Path = REPO_ROOT) -> list[tuple[Path, str]]:
    """(source path, name in the zip) of every file the app zip holds, sorted by name."""
    entries: list[tuple[Path, str]] = []
    for package in APP_PACKAGES:
        base = repo_root / package
        if not (base / "__init__.py").is_file():
            raise FileNotFoundError(f"{base} is not a Python package (no __init__.py)")
        for path in base.rglob("*"):
            rel = path.relative_to(repo_root)
            if not path.is_file() or EXCLUDED_DIRS.intersection(rel.parts) or path.suffix in EXCLUDED_SUFFIXES:
                continue
            entries.append((path, rel.as_posix()))
    return sorted(entries, key=lambda entry: entry[1])


def write_zip(entries: Iterable[tuple[Path, str]], out: Path) -> Path:
    """Write a deterministic zip: entries in the given order, fixed timestamps, mode 0644."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for source, name in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())
    tmp.replace(out)
    return out


def build_app_zip(out: Path, repo_root: Path = REPO_ROOT) -> Path:
    return write_zip(app_files(repo_root), out)


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    if match is None:
        raise ValueError(f"cannot read a package name from requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def layer_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The project's runtime dependencies, less what the Lambda runtime provides and what only the CLI uses."""
    with pyproject.open("rb") as fh:
        project = tomllib.load(fh)["project"]
    dependencies: list[str] = project["dependencies"]
    return [req for req in dependencies if _requirement_name(req) not in LAYER_EXCLUDED]


def pip_command(requirements: Sequence[str], target: Path) -> list[str]:
    """pip install for the Lambda platform: binary wheels for CPython 3.11 on manylinux2014 x86_64 only."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        LAMBDA_PLATFORM,
        "--python-version",
        LAMBDA_PYTHON,
        "--implementation",
        "cp",
        "--only-binary=:all:",
        *requirements,
    ]


def layer_files(site: Path) -> list[tuple[Path, str]]:
    """Files under an installed --target folder, named python/... as Lambda layers expect."""
    entries: list[tuple[Path, str]] = []
    for path in site.rglob("*"):
        rel = path.relative_to(site)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix in EXCLUDED_SUFFIXES:
            continue
        entries.append((path, f"python/{rel.as_posix()}"))
    return sorted(entries, key=lambda entry: entry[1])


def build_deps_layer(out: Path, requirements: Sequence[str] | None = None) -> Path:
    """Install the runtime dependencies for the Lambda platform and zip them as a layer (needs PyPI)."""
    reqs = list(requirements) if requirements is not None else layer_requirements()
    with tempfile.TemporaryDirectory(prefix="tenantmeter-layer-") as tmp:
        site = Path(tmp) / "python"
        subprocess.run(pip_command(reqs, site), check=True)  # noqa: S603 - fixed argv, no shell
        # pip --target puts console scripts in bin/ (with the build host's interpreter path); functions never run them.
        shutil.rmtree(site / "bin", ignore_errors=True)
        return write_zip(layer_files(site), out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist" / "lambda", help="output folder")
    parser.add_argument("--app-only", action="store_true", help="build app.zip only (no network needed)")
    args = parser.parse_args(argv)
    out: Path = args.out
    app = build_app_zip(out / "app.zip")
    print(f"wrote {app} ({app.stat().st_size} bytes, {len(app_files())} files)")
    if not args.app_only:
        layer = build_deps_layer(out / "deps-layer.zip")
        print(f"wrote {layer} ({layer.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
