"""Imports point down only: catalog <- slo <- generators <- cli, and no generator imports
another. Read from the source, so an import inside a function counts as much as one at
the top."""

from __future__ import annotations

from tests.support import layers
from tests.support.paths import ROOT

CATALOG = layers.CATALOG
PACKAGE = {*layers.PACKAGES, CATALOG}
ALLOWED: dict[str, set[str]] = {
    CATALOG: set(),
    "exporters": {CATALOG},
    "slo": {CATALOG},
    "rules": {CATALOG, "slo"},
    "dashboards": {CATALOG, "slo"},
    "k8s": {CATALOG, "slo"},
    "tracing": {CATALOG, "exporters", "slo"},
    "simulator": {CATALOG, "slo", "tracing"},
    # The demo runs the other parts as processes: it reads the rules it loads, not their code.
    "demo": {CATALOG, "slo", "rules"},
    "cli": {CATALOG, "slo", "rules", "dashboards", "exporters", "demo", "k8s"},
    "tests.support": PACKAGE,
    "bench": {*PACKAGE, "tests.support"},
    "tests": {*PACKAGE, "tests.support", "bench"},
}


def violations(edges: dict[tuple[str, str], list[str]]) -> list[str]:
    return [
        f"{', '.join(files)}: {source} must not import {target}"
        for (source, target), files in sorted(edges.items())
        if target not in ALLOWED[source]
    ]


def test_every_import_points_down() -> None:
    assert violations(layers.edges()) == []


def test_the_check_catches_an_upward_import() -> None:
    upward = {
        ("slo", "rules"): ["slo/x.py"],
        ("dashboards", "rules"): ["dashboards/y.py"],
        ("exporters", "tests.support"): ["exporters/z.py"],
    }
    assert violations(upward) == [
        "dashboards/y.py: dashboards must not import rules",
        "exporters/z.py: exporters must not import tests.support",
        "slo/x.py: slo must not import rules",
    ]


def test_no_test_file_imports_another() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for module in layers.imports(path)
        if module.startswith(("tests.test_", "tests.conftest"))
    ]
    assert offenders == []


def test_the_catalog_and_the_model_are_what_the_layers_say() -> None:
    assert layers.unit("llm_slo_stack.exporters.catalog") == CATALOG
    assert layers.unit("llm_slo_stack.exporters.sidecar") == "exporters"
    assert layers.unit("llm_slo_stack.slo.conventions") == "slo"
    assert layers.unit("yaml") is None
