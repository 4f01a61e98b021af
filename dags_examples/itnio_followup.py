"""
Order follow-up, the flow a shop runs for each order it ships:

1. a thank-you text,
2. the invoice as a PDF document, sent as a *reply* to the thank-you text (its messageId comes through XCom),
3. quick-reply buttons asking for a rating.

A follow-up is a business-initiated message: the customer may not have written to the business in the last 24
hours, and WhatsApp delivers a session message (text, document, buttons) only inside that window; outside it the
vendor still accepts the send, then pushes ``failed`` (131047), and the task stays green. So each message has a
``fallback_template``, an approved template sent instead when the webhook receiver (Airflow 3.1+) recorded no
message from the customer in the last 24 hours, and ``window_unknown="template"``: when the receiver cannot be
asked either (``airflow dags test`` without an API server), the template goes out too, since it reaches the
customer whatever the window. The XCom ``sent_kind`` of each task says which went out. (On Airflow 2.11, which has
no receiver, the session messages are sent as they are: send templates there when you cannot know the window.)

The recipient and the order come from the DAG's params, so a run is triggered for one customer, by the order
system or by hand: ``airflow dags trigger itnio_followup --conf '{"phone": "+1 555 010 0200", "order_id": "A-1042"}'``
or the UI's *Trigger* button. The DAG has no schedule (``schedule=None``): unpausing it starts nothing, and each
trigger sends exactly one thank-you, one invoice and one rating question. (With a daily schedule, unpausing
would at once start a run for the last past interval, and a trigger right after it would send everything twice.)
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_itnio.messages import Template
from airflow_provider_itnio.operators import (
    ItnioSendButtonsOperator,
    ItnioSendDocumentOperator,
    ItnioSendTextOperator,
)
from airflow_provider_itnio.window import receiver_available

INVOICE_LINK = "https://shop.example.com/invoices/{{ params.order_id }}.pdf"
INVOICE_FILENAME = "invoice-{{ params.order_id }}.pdf"


# [START howto_business_initiated]
def business_initiated(template: Template | dict[str, Any]) -> dict[str, Any]:
    """
    Return the arguments that send ``template`` instead of the session message unless the window is known open.

    :param template: The approved template to send outside the customer's 24-hour window (a model, or the API's
        template dict when a value such as a link holds Jinja, which the model would check before it is rendered).
    """
    if not receiver_available():  # Airflow 2.11: nothing knows the window (see the docstring above)
        return {}
    return {"fallback_template": template, "window_unknown": "template"}
    # [END howto_business_initiated]


with DAG(
    dag_id="itnio_followup",
    description="Thank the customer, send the invoice as a reply, ask for a rating (templates outside 24 h)",
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
    # [START howto_operator_text]
    thank_you = ItnioSendTextOperator(
        task_id="thank_you",
        recipient="{{ params.phone }}",
        body="Hi {{ params.name }}, thank you for your order {{ params.order_id }}! Your invoice follows.",
        # "Hi {{1}}, thank you for your order {{2}}!"
        **business_initiated(
            Template.with_body_parameters("order_thank_you", "en_US", ["{{ params.name }}", "{{ params.order_id }}"])
        ),
    )
    # [END howto_operator_text]

    # [START howto_reply_to]
    invoice = ItnioSendDocumentOperator(
        task_id="invoice",
        recipient="{{ params.phone }}",
        link=INVOICE_LINK,
        filename=INVOICE_FILENAME,
        caption="Invoice for order {{ params.order_id }}",
        reply_to=thank_you.output,  # quote the thank-you message: its messageId comes through XCom
        # a document header and "Your invoice for order {{1}}." (a template cannot quote a message)
        **business_initiated(
            {  # the API's template dict: its link holds Jinja, checked once rendered
                "name": "order_invoice",
                "language": {"code": "en_US"},
                "components": [
                    {
                        "type": "header",
                        "parameters": [
                            {"type": "document", "document": {"link": INVOICE_LINK, "filename": INVOICE_FILENAME}}
                        ],
                    },
                    {"type": "body", "parameters": [{"type": "text", "text": "{{ params.order_id }}"}]},
                ],
            }
        ),
    )
    # [END howto_reply_to]

    # [START howto_operator_buttons]
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
        # "How happy are you with order {{1}}?" with the same three quick-reply buttons, approved with it
        **business_initiated(Template.with_body_parameters("order_rating", "en_US", ["{{ params.order_id }}"])),
    )
    # [END howto_operator_buttons]

    invoice >> ask_rating
