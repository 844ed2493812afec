"""`llm-slo`: validate SLO files and generate rules (and their promtool tests) from them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rules import testgen, writer
from slo import output, spec
from slo.model import Spec

EXIT_INVALID = 1
EXIT_WRITE = 3


def _load_all(paths: list[str]) -> list[Spec] | None:
    """Every spec, or None after printing every problem of every file."""
    specs: list[Spec] = []
    problems: list[str] = []
    for path in paths:
        try:
            specs.append(spec.load(path))
        except spec.SpecError as error:
            problems += [str(p) for p in error.problems]
    seen: dict[str, str] = {}
    for loaded in specs:
        if loaded.service in seen:
            problems.append(
                f"{loaded.source}: service: expected a service not defined by another file, "
                f"found {loaded.service!r}, also in {seen[loaded.service]}"
            )
        seen.setdefault(loaded.service, loaded.source)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s); nothing was written.", file=sys.stderr)
        return None
    return specs


def check(args: argparse.Namespace) -> int:
    specs = _load_all(args.specs)
    if specs is None:
        return EXIT_INVALID
    for loaded in specs:
        print(f"{loaded.source}: ok ({len(loaded.slos)} SLOs for service {loaded.service})")
    return 0


def generate(args: argparse.Namespace) -> int:
    specs = _load_all(args.specs)
    if specs is None:
        return EXIT_INVALID
    rules_dir = Path(args.rules_dir)
    files: dict[Path, str] = {}
    stale: set[Path] = set()
    try:
        for loaded in specs:
            generated = {rules_dir / name: text for name, text in writer.files(loaded).items()}
            files |= generated
            stale |= set(writer.owned(loaded, rules_dir)) - set(generated)
        output.write_all(files)
        for path in sorted(stale):
            path.unlink()
    except testgen.TestGenError as error:
        print(f"{loaded.source}: cannot build promtool test series: {error}", file=sys.stderr)
        print("Nothing was written.", file=sys.stderr)
        return EXIT_INVALID
    except OSError as error:
        print(f"llm-slo: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_WRITE
    for path in sorted(files):
        print(f"wrote {path}")
    for path in sorted(stale):
        print(f"removed {path} (no longer generated)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llm-slo", description="SLO files -> Prometheus rules, alerts and their tests."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="validate SLO files, write nothing")
    checker.add_argument("specs", nargs="+", metavar="SPEC")
    checker.set_defaults(run=check)
    generator = commands.add_parser("generate", help="write rules and rule tests")
    generator.add_argument("specs", nargs="+", metavar="SPEC")
    generator.add_argument("--rules-dir", default="rules/generated", metavar="DIR")
    generator.set_defaults(run=generate)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
