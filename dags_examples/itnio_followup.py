"""
Order follow-up, the flow a shop runs for each order it ships:

1. a thank-you text,
2. the invoice as a PDF document, sent as a *reply* to the thank-you text (its messageId comes through XCom),
3. quick-reply buttons asking for a rating.

The recipient and the order come from the DAG's params, so a run is triggered for one customer, by the order
system or by hand: ``airflow dags trigger itnio_followup --conf '{"phone": "+1 555 010 0200", "order_id": "A-1042"}'``
or the UI's *Trigger* button. The DAG has no schedule (``schedule=None``): unpausing it starts nothing, and each
trigger sends exactly one thank-you text, one invoice and one rating question. (With a daily schedule, unpausing
would at once start a run for the last past interval, and a trigger right after it would send everything twice.)
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_itnio.operators import (
    ItnioSendButtonsOperator,
    ItnioSendDocumentOperator,
    ItnioSendTextOperator,
)

with DAG(
    dag_id="itnio_followup",
    description="Thank the customer, send the invoice as a reply, ask for a rating",
    schedule=None,  # one run per trigger (per order); no scheduled run to start when the DAG is unpaused
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "phone": Param("+1 555 010 0200", type="string", description="The customer's WhatsApp number"),
        "name": Param("Ada", type="string"),
        "order_id": Param("A-1042", type="string"),
    },
    tags=["itnio", "example"],
) as dag:
    thank_you = ItnioSendTextOperator(
        task_id="thank_you",
        recipient="{{ params.phone }}",
        body="Hi {{ params.name }}, thank you for your order {{ params.order_id }}! Your invoice follows.",
    )

    invoice = ItnioSendDocumentOperator(
        task_id="invoice",
        recipient="{{ params.phone }}",
        link="https://shop.example.com/invoices/{{ params.order_id }}.pdf",
        filename="invoice-{{ params.order_id }}.pdf",
        caption="Invoice for order {{ params.order_id }}",
        reply_to=thank_you.output,  # quote the thank-you message: its messageId comes through XCom
    )

    ask_rating = ItnioSendButtonsOperator(
        task_id="ask_rating",
        recipient="{{ params.phone }}",
        header="How did we do?",
        body="How happy are you with order {{ params.order_id }}?",
        footer="Tap one answer",
        buttons=[
            {"id": "rating-{{ params.order_id }}-good", "title": "Very happy"},
            {"id": "rating-{{ params.order_id }}-ok", "title": "It was OK"},
            {"id": "rating-{{ params.order_id }}-bad", "title": "Not happy"},
        ],
    )

    invoice >> ask_rating
