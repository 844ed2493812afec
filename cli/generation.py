"""Orchestration: ask every generator for its files, write them all or none, drop stale ones.

The generators (`rules/`, `dashboards/`, the deployment generators to come) know nothing
of each other nor of this module; each offers the same three functions, and a new one is
one more entry in GENERATORS.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from llm_slo_stack.cli import output
from llm_slo_stack.dashboards import generator as dashboards
from llm_slo_stack.rules import testgen, writer
from llm_slo_stack.slo.model import Spec


class Generator(Protocol):
    """What a generator module offers; paths are relative to its output folder."""

    def files(self, spec: Spec) -> dict[str, str]: ...

    def shared_files(self, specs: Sequence[Spec]) -> dict[str, str]: ...

    def owned(self, spec: Spec, out_dir: Path) -> list[Path]: ...


GENERATORS: dict[str, Generator] = {"rules": writer, "dashboards": dashboards}
# What a generator raises for a spec it cannot render (said to the user, not a traceback).
GENERATION_ERRORS = (testgen.TestGenError,)


class GenerationError(Exception):
    """A spec that passed validation but that a generator cannot render."""


@dataclass
class Plan:
    """Every file to write, and the earlier generated files no longer written."""

    files: dict[Path, str] = field(default_factory=dict)
    stale: set[Path] = field(default_factory=set)


def plan(specs: Sequence[Spec], out_dirs: dict[str, Path]) -> Plan:
    """The files of every generator named in `out_dirs` (generator -> folder) for `specs`."""
    result = Plan()
    for name, out_dir in out_dirs.items():
        generator = GENERATORS[name]
        result.files |= {
            out_dir / path: text for path, text in generator.shared_files(specs).items()
        }
        for spec in specs:
            try:
                generated = {out_dir / path: text for path, text in generator.files(spec).items()}
            except GENERATION_ERRORS as error:
                raise GenerationError(f"{spec.source}: cannot generate {name}: {error}") from None
            result.files |= generated
            result.stale |= set(generator.owned(spec, out_dir))
    result.stale -= set(result.files)
    return result


RULE_FILE_SUFFIX = ".rules.yaml"  # the Prometheus rule files among the generated ones
PROMTOOL_TIMEOUT = 120


def verify(result: Plan, specs: Sequence[Spec]) -> None:
    """Run promtool, when it is installed, on every rule file of the plan before any is
    written: a spec whose rules Prometheus would refuse (a template function it lacks, a
    regex RE2 cannot parse) is a GenerationError naming the specs, not a broken file."""
    promtool = shutil.which("promtool")
    rules = {
        path: text for path, text in result.files.items() if path.name.endswith(RULE_FILE_SUFFIX)
    }
    if promtool is None or not rules:
        return
    with tempfile.TemporaryDirectory(prefix="llm-slo-") as folder:
        paths = []
        for path, text in rules.items():
            paths.append(Path(folder) / path.name)
            paths[-1].write_text(text, encoding="utf-8")
        try:
            run = subprocess.run(
                [promtool, "check", "rules", *map(str, paths)],
                capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            raise GenerationError(f"promtool check rules could not run: {error}") from None
    if run.returncode != 0:
        # One line per distinct problem: the tiers of an SLO repeat the same annotation.
        found = dict.fromkeys(
            re.sub(r"rule \d+, ", "", line.strip().replace(folder + "/", ""))
            for line in (run.stdout + run.stderr).splitlines()
            if line.strip() and not line.strip().startswith(("Checking ", "SUCCESS", "FAILED"))
        )
        sources = ", ".join(spec.source for spec in specs)
        raise GenerationError(
            f"{sources}: Prometheus would refuse the generated rules (promtool check rules): "
            + "; ".join(list(found)[:3])
        )


def apply(result: Plan) -> set[Path]:
    """Write every planned file that changed (`output.write_changed`), then remove the
    stale ones; the paths written."""
    written = output.write_changed(result.files)
    for path in sorted(result.stale):
        path.unlink()
    return written
