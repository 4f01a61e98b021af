"""
Order status update that respects WhatsApp's 24-hour customer-service window.

A session message (here a text) only reaches a customer who wrote to the business in the last 24 hours; after
that, an approved template is the only way in. ``choose_channel`` looks at when the customer last wrote
(``last_inbound_at``, e.g. from the webhook log or the CRM) and picks:

- ``session_text`` inside the window (a free-form text, and cheaper on most price lists),
- ``template_update`` outside it (the approved ``order_update`` template: "Your order {{1}} is now {{2}}.").

The branch not taken is skipped; ``record`` then keeps the channel and the messageId of what was sent (the row
an audit table or a delivery check would store).

    airflow dags trigger itnio_order_update \\
        --conf '{"phone": "+1 555 010 0200", "order_id": "A-1042", "status": "shipped",
                 "last_inbound_at": "2026-03-02T09:15:00+00:00"}'
"""

from __future__ import annotations

import datetime
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_itnio.operators import ItnioSendTemplateOperator, ItnioSendTextOperator

#: WhatsApp's customer-service window, less a margin for the time the message takes to go out.
SESSION_WINDOW = datetime.timedelta(hours=24) - datetime.timedelta(minutes=10)


@task.branch
def choose_channel(last_inbound_at: str) -> str:
    """
    ``session_text`` when the customer wrote less than 24 hours ago, else ``template_update``.

    :param last_inbound_at: When the customer last wrote to the business (ISO 8601), empty if never (the param's
        ``None`` is rendered as ``""``).
    """
    if last_inbound_at.strip():
        last = pendulum.parse(last_inbound_at.strip())
        if isinstance(last, pendulum.DateTime) and pendulum.now("UTC") - last < SESSION_WINDOW:
            return "session_text"
    return "template_update"


@task(trigger_rule="none_failed_min_one_success")
def record(**context: Any) -> dict[str, Any]:
    """
    Return the channel used and the messageId the API returned, for an audit table.

    :param context: The task's context (its ``ti`` pulls the sent task's XCom).
    """
    ti = context["ti"]
    for channel in ("session_text", "template_update"):
        message_id = ti.xcom_pull(task_ids=channel)
        if message_id:
            return {"order_id": context["params"]["order_id"], "channel": channel, "messageId": message_id}
    raise ValueError("no update was sent")


with DAG(
    dag_id="itnio_order_update",
    description="Tell a customer their order's new status: session text inside 24 h, template outside",
    schedule=None,  # triggered by the order system on every status change
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "phone": Param("+1 555 010 0200", type="string", description="The customer's WhatsApp number"),
        "order_id": Param("A-1042", type="string"),
        "status": Param("shipped", type="string", description="The order's new status"),
        "last_inbound_at": Param(
            None,  # optional: a type that allows null, so the trigger form's Trigger button works when empty
            type=["null", "string"],
            description="When the customer last wrote to the business (ISO 8601); empty if never",
        ),
    },
    tags=["itnio", "example"],
) as dag:
    session_text = ItnioSendTextOperator(
        task_id="session_text",
        recipient="{{ params.phone }}",
        body="Good news: your order {{ params.order_id }} is now {{ params.status }}. Any question? Just reply.",
    )

    # [START howto_operator_template]
    template_update = ItnioSendTemplateOperator(
        task_id="template_update",
        recipient="{{ params.phone }}",
        template_name="order_update",
        language="en_US",
        components=[
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "{{ params.order_id }}"},
                    {"type": "text", "text": "{{ params.status }}"},
                ],
            }
        ],
    )
    # [END howto_operator_template]

    channel = choose_channel(last_inbound_at="{{ params.last_inbound_at or '' }}")  # empty, never "None"
    channel >> [session_text, template_update] >> record()
