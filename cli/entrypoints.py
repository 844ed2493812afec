"""The console scripts. A command whose optional extra is not installed says which one to
install, in one line, instead of dying in an import traceback."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

EXIT_MISSING_EXTRA = 2
# What the tracing extra brings that our modules import (pyproject.toml's
# optional-dependencies); the sim extra is the tracing extra.
TRACING_MODULES = frozenset({"opentelemetry", "aiohttp", "starlette", "uvicorn"})


def _run(program: str, extra: str, module_name: str) -> int:
    try:
        module = importlib.import_module(f"llm_slo_stack.{module_name}")
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in TRACING_MODULES:
            raise
        print(
            f"{program}: {missing} is not installed; install the '{extra}' extra: "
            f"pip install 'llm-slo-stack[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_MISSING_EXTRA
    main: Callable[[], int] = module.main
    return main()


def sim() -> int:
    return _run("llm-sim", "sim", "simulator.server")


def trace_proxy() -> int:
    return _run("llm-trace-proxy", "tracing", "tracing.proxy")
