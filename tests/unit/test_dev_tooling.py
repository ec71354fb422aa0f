"""Dev tooling (devtools/) stays out of the product: not installed, not in the image, not
imported by `services/`, not offered by the `routing` command; bin/ runs it from the
checkout."""

from __future__ import annotations

import ast
import gc
import tomllib
from pathlib import Path

import typer

from services import cli

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def parsed(path: Path) -> ast.Module:
    """The module's syntax tree, parsed with the garbage collector paused: Python 3.11.7
    raised SystemError ("AST constructor recursion depth mismatch") once when a finalizer
    (an earlier test's future, logging its exception as never retrieved) ran in the
    middle of the parse, as these tests run after the integration tests."""
    source = path.read_text(encoding="utf-8")
    collecting = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if collecting:
            gc.enable()


class TestTheProductPackage:
    def test_no_module_of_services_imports_the_dev_tooling(self) -> None:
        offenders = sorted(
            str(path.relative_to(ROOT)) for path in (ROOT / "services").rglob("*.py")
            if any(name == "devtools" or name.startswith("devtools.")
                   for name in imported_modules(path)))
        assert offenders == []

    def test_the_launchers_and_demo_data_left_the_package(self) -> None:
        assert not (ROOT / "services" / "local").exists()
        assert not (ROOT / "services" / "demo_seed.py").exists()
        assert not (ROOT / "services" / "segmenter" / "demo.py").exists()
        assert (ROOT / "devtools" / "kafka_broker.py").exists()

    def test_package_discovery_installs_services_only(self) -> None:
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
        assert include == ["services*"]

    def test_the_routing_command_offers_no_dev_only_command(self) -> None:
        group = typer.main.get_group(cli.app)
        assert {"topics", "credentials", "segments", "recompute-tiers"} <= set(group.commands)
        assert not {"up", "demo-data"} & set(group.commands)


class TestTheImage:
    def test_the_image_neither_copies_nor_receives_the_dev_tooling(self) -> None:
        dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
        copies = [line for line in dockerfile.splitlines() if line.startswith("COPY ")]
        assert copies and not any("devtools" in line for line in copies)
        ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        assert "devtools" in ignored


class TestTheCheckoutTools:
    def test_bin_run_starts_everything_through_the_dev_tooling(self) -> None:
        run = (ROOT / "bin" / "run").read_text(encoding="utf-8")
        assert "python -m devtools.run up" in run
        from devtools import run as dev_run

        assert {"up", "demo-data"} <= set(typer.main.get_group(dev_run.app).commands)

    def test_lint_and_types_cover_the_dev_tooling(self) -> None:
        test = (ROOT / "bin" / "test").read_text(encoding="utf-8")
        assert "ruff check services devtools" in test
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        assert "devtools" in pyproject["tool"]["mypy"]["packages"]
