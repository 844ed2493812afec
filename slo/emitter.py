"""YAML as the generators write it: in the order built, no anchors or aliases (a file
reads the same wherever a value is shared), multi-line strings (alert expressions, an
embedded SLO file, kustomize patches) as literal blocks, no line folding."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

# libyaml's emitter when PyYAML has it (the same bytes, a tenth of the time: dumping was
# 90 % of generating a 50-SLO spec); the pure-Python one otherwise.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class Dumper(_BaseDumper):  # type: ignore[valid-type,misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _str)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=1_000_000, allow_unicode=True)


def dump_all(documents: Iterable[Any]) -> str:
    return yaml.dump_all(
        documents, Dumper=Dumper, sort_keys=False, width=1_000_000, allow_unicode=True
    )
