"""Messages that break the API's rules only once rendered: each task must fail before any request."""

from __future__ import annotations

import datetime

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_itnio.operators import ItnioSendMessageOperator

ROWS = [{"id": f"r{n}", "title": f"Row {n}"} for n in range(11)]

#: case name -> a message in the API's dict form that breaks one rule, and the field the error names.
BAD_MESSAGES: dict[str, tuple[dict[str, object], str]] = {
    "list_11_rows": (
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "Pick"},
                "action": {"button": "Open", "sections": [{"title": "All", "rows": ROWS}]},
            },
        },
        "interactive.action.sections",
    ),
    "button_title_21": (
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Rate us"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "x" * 21}}]},
            },
        },
        "interactive.action.buttons[0].reply.title",
    ),
    "image_ftp_link": ({"type": "image", "image": {"link": "ftp://example.com/a.png"}}, "image.link"),
    "latitude_91": (
        {"type": "location", "location": {"latitude": "91", "longitude": "0", "name": "N", "address": "A"}},
        "location.latitude",
    ),
    "text_4097": ({"type": "text", "text": {"body": "x" * 4097}}, "text.body"),
    "unknown_type": ({"type": "fax", "fax": {"body": "x"}}, "type"),
}

with DAG(
    "itnio_rendered_rules",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=0)},
    params={name: message for name, (message, _) in BAD_MESSAGES.items()},
    render_template_as_native_obj=True,
    tags=["test"],
):
    for name in BAD_MESSAGES:
        ItnioSendMessageOperator(task_id=name, recipient="15550100200", message="{{ params." + name + " }}")
