"""The Alertmanager configuration the generated alerts are meant for: pages and tickets
routed apart, grouped by service and SLO, and a ticket silenced while a page of the same
alert, service, SLO and group fires (the slow tiers say nothing the fast ones have not).

The receivers come with no integration: add yours (PagerDuty, Slack, a webhook) under
`page` and `ticket`. `amtool check-config` accepts the file as it is; the compose stack
loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_slo_stack.exporters import catalog
from llm_slo_stack.slo import burnrate

FILE = "alertmanager.yaml"
DEFAULT_RECEIVER = "default"  # anything that is neither a page nor a ticket
GROUP_BY = [catalog.ALERTNAME, catalog.SERVICE, catalog.SLO]
SAME_ALERT = [catalog.ALERTNAME, catalog.SERVICE, catalog.SLO]
GROUP_WAIT_SECONDS = 30  # a new group's first notification waits this long for company


def config(group_labels: Sequence[str]) -> dict[str, Any]:
    """The configuration for alerts grouped by `group_labels` (the specs' `group_by`): a
    page inhibits only the ticket of its own group (a model's page, not another model's
    ticket; a label neither alert has counts as equal)."""
    severity = catalog.SEVERITY
    return {
        "route": {
            "receiver": DEFAULT_RECEIVER,
            "group_by": GROUP_BY,
            "group_wait": f"{GROUP_WAIT_SECONDS}s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"receiver": burnrate.PAGE, "matchers": [f'{severity}="{burnrate.PAGE}"'],
                 "repeat_interval": "1h"},
                {"receiver": burnrate.TICKET, "matchers": [f'{severity}="{burnrate.TICKET}"'],
                 "repeat_interval": "12h"},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": [f'{severity}="{burnrate.PAGE}"'],
                "target_matchers": [f'{severity}="{burnrate.TICKET}"'],
                "equal": [*SAME_ALERT, *sorted(set(group_labels) - set(SAME_ALERT))],
            }
        ],
        "receivers": [{"name": n} for n in (DEFAULT_RECEIVER, burnrate.PAGE, burnrate.TICKET)],
    }  # fmt: skip
