"""Orchestration: ask every generator for its files, write them all or none, drop stale ones.

The generators (`rules/`, `dashboards/`, the deployment generators to come) know nothing
of each other nor of this module; each offers the same three functions, and a new one is
one more entry in GENERATORS.
"""

from __future__ import annotations

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

    def shared_files(self) -> dict[str, str]: ...

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
        result.files |= {out_dir / path: text for path, text in generator.shared_files().items()}
        for spec in specs:
            try:
                generated = {out_dir / path: text for path, text in generator.files(spec).items()}
            except GENERATION_ERRORS as error:
                raise GenerationError(f"{spec.source}: cannot generate {name}: {error}") from None
            result.files |= generated
            result.stale |= set(generator.owned(spec, out_dir)) - set(generated)
    return result


def apply(result: Plan) -> None:
    """Write every planned file (all or nothing), then remove the stale ones."""
    output.write_all(result.files)
    for path in sorted(result.stale):
        path.unlink()
