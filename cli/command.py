"""`llm-slo`: validate SLO files, generate rules (and their promtool tests) and dashboards
from them, and fit histogram buckets to latencies."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from llm_slo_stack.cli import coverage, demo, generation, output
from llm_slo_stack.demo import configs
from llm_slo_stack.exporters import backends, catalog
from llm_slo_stack.exporters.upstream import DEFAULT_TIMEOUT, ScrapeError
from llm_slo_stack.k8s import manifests
from llm_slo_stack.rules import alertmanager, generator, writer
from llm_slo_stack.slo import buckets, duration, openslo, spec
from llm_slo_stack.slo.model import Spec

EXIT_INVALID = 1
CHECKED_DIRS = {"rules": Path("rules"), "dashboards": Path("dashboards")}  # never written
EXIT_WRITE = 3
DEFAULT_HELP = "SLO files (default: the default spec shipped with the package)"


def _load_all(paths: list[str]) -> list[Spec] | None:
    """Every spec, or None after printing every problem of every file."""
    specs: list[Spec] = []
    problems: list[str] = []
    for path in paths:
        packaged = Path(path) == spec.DEFAULT_PATH
        try:
            specs.append(spec.load(path, spec.DEFAULT_SOURCE if packaged else None))
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
    """Everything `generate` checks, in memory: the specs, then their files (promtool on
    the rules when installed); nothing is written."""
    specs = _load_all(args.specs)
    if specs is None:
        return EXIT_INVALID
    try:
        generation.verify(generation.plan(specs, CHECKED_DIRS), specs)
    except generation.GenerationError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID
    for loaded in specs:
        each = f" per ({', '.join(loaded.group_by)}) group" if loaded.group_by else ""
        size = f"its recording rules write {generator.recorded_series(loaded)} series{each}"
        print(f"{loaded.source}: ok ({len(loaded.slos)} SLOs for service {loaded.service}); {size}")
    if args.metrics is None:
        return 0
    try:
        bounds = coverage.server_bounds(
            coverage.read_payload(args.metrics, args.timeout), args.backend
        )
    except ScrapeError as error:
        print(f"llm-slo: {args.metrics}: {error}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as error:
        print(f"llm-slo: cannot read {args.metrics}: {error.strerror}", file=sys.stderr)
        return EXIT_INVALID
    print(f"{args.metrics}: {bounds.backend}")
    found = [f for loaded in specs for f in coverage.findings(loaded, bounds)]
    for finding in found:
        print(finding.message, file=sys.stdout if finding.ok else sys.stderr)
    return 0 if all(f.ok for f in found) else EXIT_INVALID


def generate(args: argparse.Namespace) -> int:
    specs = _load_all(args.specs)
    if specs is None:
        return EXIT_INVALID
    out_dirs = {"rules": Path(args.rules_dir), "dashboards": Path(args.dashboards_dir)}
    try:
        result = generation.plan(specs, out_dirs)
        generation.verify(result, specs)
        written = generation.apply(result)
    except generation.GenerationError as error:
        print(f"{error}\nNothing was written.", file=sys.stderr)
        return EXIT_INVALID
    except OSError as error:
        print(f"llm-slo: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_WRITE
    for path in sorted(written):
        print(f"wrote {path}")
    if len(written) < len(result.files):
        print(f"{len(result.files) - len(written)} file(s) unchanged")
    for path in sorted(result.stale):
        print(f"removed {path} (no longer generated)")
    return 0


def import_openslo(args: argparse.Namespace) -> int:
    """OpenSLO v1 documents -> our SLO files: printed when there is one service and no
    --out-dir, else written as <service>.yaml (all or nothing)."""
    services: dict[str, str] = {}
    problems: list[str] = []
    for path in args.files:
        try:
            text = Path(path).read_text(encoding="utf-8")
            for service, body in openslo.convert(text, path).items():
                if service in services:
                    problems.append(f"{path}: service {service!r} also comes from another file")
                services[service] = body
        except spec.SpecError as error:
            problems += [str(p) for p in error.problems]
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{path}: expected a readable UTF-8 file, found {error}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s); nothing was written.", file=sys.stderr)
        return EXIT_INVALID
    if args.out_dir is None:
        if len(services) > 1:
            print("llm-slo import: several services: give --out-dir", file=sys.stderr)
            return EXIT_INVALID
        sys.stdout.write(next(iter(services.values())))
        return 0
    return _write({Path(args.out_dir) / f"{svc}.yaml": body for svc, body in services.items()})


def _write(files: dict[Path, str]) -> int:
    """The files that changed, all or none, each said as it lands; a failure names the
    path."""
    try:
        written = output.write_changed(files)
    except OSError as error:
        print(f"llm-slo: cannot write {error.filename}: {error.strerror}; nothing was written",
              file=sys.stderr)  # fmt: skip
        return EXIT_WRITE
    for path in sorted(written):
        print(f"wrote {path}")
    if len(written) < len(files):
        print(f"{len(files) - len(written)} file(s) unchanged")
    return 0


def _print_json(data: object) -> None:
    print(json.dumps(data, separators=(",", ":"), sort_keys=True))


def _seconds(text: str) -> float:
    """A latency in seconds: a plain number, or a duration such as 500ms."""
    try:
        return float(text)
    except ValueError:
        parsed = duration.parse(text)
        if parsed is None:
            raise argparse.ArgumentTypeError(
                f"expected seconds or a duration such as 500ms, found {text!r}"
            ) from None
        return float(parsed)


def _bound_list(text: str) -> list[float]:
    try:
        bounds = json.loads(text)
    except json.JSONDecodeError:
        bounds = None
    if not buckets.valid_bounds(bounds):
        raise argparse.ArgumentTypeError(
            f"expected a JSON list of increasing positive bounds like [0.1, 0.5, 2], found {text!r}"
        )
    return [float(b) for b in bounds]


def buckets_fit(args: argparse.Namespace) -> int:
    try:
        samples = buckets.read_samples(args.samples)
        _print_json(buckets.fit(samples, args.max_buckets, args.include))
    except (buckets.SamplesError, ValueError) as error:
        print(f"llm-slo buckets fit: {error}", file=sys.stderr)
        return EXIT_INVALID
    return 0


def buckets_eval(args: argparse.Namespace) -> int:
    try:
        samples = buckets.read_samples(args.samples)
    except buckets.SamplesError as error:
        print(f"llm-slo buckets eval: {error}", file=sys.stderr)
        return EXIT_INVALID
    _print_json(buckets.evaluate(samples, args.buckets))
    return 0


def buckets_defaults(_: argparse.Namespace) -> int:
    _print_json({phase: list(metric.buckets) for phase, metric in catalog.PHASES.items()})
    return 0


def compose_configs(args: argparse.Namespace) -> int:
    """compose/generated/: Prometheus' scrape and Alertmanager's routing for compose/."""
    specs = _load_all([args.spec])
    if specs is None:
        return EXIT_INVALID
    return _write({Path(args.out_dir) / n: t for n, t in configs.compose_files(specs[0]).items()})


def kubernetes(args: argparse.Namespace) -> int:
    """deploy/kubernetes/: the kustomize base and overlays for a spec's `deploy:` section,
    its PrometheusRule from the rule generator."""
    specs = _load_all([args.spec])
    if specs is None:
        return EXIT_INVALID
    loaded = specs[0]
    if loaded.deploy is None:
        print(f"{loaded.source}: deploy: expected a section with namespace, engine and model, "
              "found none (see slo/README.md)", file=sys.stderr)  # fmt: skip
        return EXIT_INVALID
    try:
        counters = Path(args.dcgm_counters).read_text(encoding="utf-8")
        slo_text = Path(args.spec).read_text(encoding="utf-8")
    except OSError as error:
        print(f"llm-slo k8s: {error}", file=sys.stderr)
        return EXIT_INVALID
    rule = writer.files(loaded)[f"{loaded.service}.prometheusrule.yaml"]
    routing = yaml.safe_load(writer.shared_files([loaded])[alertmanager.FILE])
    made = manifests.files(loaded, slo_text, counters, rule, routing)
    return _write({Path(args.out) / name: text for name, text in made.items()})


def vllm_args(args: argparse.Namespace) -> int:
    specs = _load_all([args.spec])
    if specs is None:
        return EXIT_INVALID
    _print_json(buckets.vllm_families(specs[0]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llm-slo", description="SLO files -> Prometheus rules, alerts and their tests."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser(
        "check",
        help="validate SLO files, write nothing; with --metrics, check a server's buckets too",
    )
    checker.add_argument("specs", nargs="*", metavar="SPEC", help=DEFAULT_HELP)
    checker.add_argument(
        "--metrics",
        metavar="URL|FILE",
        help="a server's live /metrics URL or a saved payload: does it carry each latency "
        "SLO's threshold as a bucket bound?",
    )
    checker.add_argument(
        "--backend", choices=["auto", *backends.BACKENDS], default="auto", help="for --metrics"
    )
    checker.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="for a URL")
    checker.set_defaults(run=check)
    generator = commands.add_parser("generate", help="write rules, their tests and dashboards")
    generator.add_argument("specs", nargs="*", metavar="SPEC", help=DEFAULT_HELP)
    generator.add_argument("--rules-dir", default="rules/generated", metavar="DIR")
    generator.add_argument("--dashboards-dir", default="dashboards/generated", metavar="DIR")
    generator.set_defaults(run=generate)

    fitting = commands.add_parser("buckets", help="fit, evaluate or list histogram buckets")
    kinds = fitting.add_subparsers(dest="buckets_command", required=True)
    fit = kinds.add_parser("fit", help="bounds that minimise the quantile error on samples (JSON)")
    fit.add_argument(
        "--samples", required=True, metavar="FILE", help="one latency in seconds per line"
    )
    fit.add_argument("--max-buckets", type=int, required=True, metavar="N")
    fit.add_argument(
        "--include",
        type=lambda text: [_seconds(part) for part in text.split(",") if part],
        default=[],
        metavar="0.5,2",
        help="bounds that must be in the answer (your SLO thresholds)",
    )
    fit.set_defaults(run=buckets_fit)
    evaluation = kinds.add_parser(
        "eval", help="exact and estimated p50/p90/p95/p99 for bounds (JSON)"
    )
    evaluation.add_argument("--samples", required=True, metavar="FILE")
    evaluation.add_argument("--buckets", type=_bound_list, required=True, metavar="'[0.1, 0.5, 2]'")
    evaluation.set_defaults(run=buckets_eval)
    kinds.add_parser("defaults", help="the tuned default bounds per phase (JSON)").set_defaults(
        run=buckets_defaults
    )

    importer = commands.add_parser("import", help="SLO files from another format")
    formats = importer.add_subparsers(dest="import_format", required=True)
    opens = formats.add_parser(
        "openslo", help="OpenSLO v1 Service, SLO, SLI and AlertPolicy documents"
    )
    opens.add_argument("files", nargs="+", metavar="FILE")
    opens.add_argument("--out-dir", metavar="DIR", help="write <service>.yaml files here")
    opens.set_defaults(run=import_openslo)

    vllm = commands.add_parser(
        "vllm-args", help="vLLM's --custom-histogram-buckets JSON for a spec"
    )
    vllm.add_argument("spec", metavar="SPEC")
    vllm.set_defaults(run=vllm_args)
    composer = commands.add_parser(
        "compose", help="Prometheus' and Alertmanager's files for the compose stack"
    )
    composer.add_argument("spec", metavar="SPEC")
    composer.add_argument("--out-dir", default="compose/generated", metavar="DIR")
    composer.set_defaults(run=compose_configs)
    k8s = commands.add_parser("k8s", help="Kubernetes manifests (kustomize) from a spec's deploy:")
    k8s.add_argument("spec", metavar="SPEC")
    k8s.add_argument("--out", default="deploy/kubernetes", metavar="DIR")
    k8s.add_argument("--dcgm-counters", default="compose/dcgm-counters.csv", metavar="FILE",
                     help="dcgm-exporter's counters file for the GPU DaemonSet")  # fmt: skip
    k8s.set_defaults(run=kubernetes)
    demo.add_parser(commands)
    args = parser.parse_args(argv)
    if getattr(args, "specs", None) == []:
        args.specs = [str(spec.DEFAULT_PATH)]
    if args.command == "demo" and args.spec is None:
        args.spec = str(spec.DEFAULT_PATH)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
