"""
Send an invoice, wait until the customer has read it, and otherwise send a template reminder the next day
(Airflow 3.1+).

1. ``send_invoice``: the invoice as a PDF document (a session message: the customer wrote in the last 24 hours,
   e.g. when ordering).
2. ``invoice_read``: ``ItnioMessageStatusSensor`` waits, deferred in the triggerer (no worker slot held), until
   the vendor reports the document ``read``, for at most a day (``READ_WAIT``). Read: the run ends, the reminder
   is skipped. Not read within a day, or the vendor reports the message ``failed`` / ``deleted``:
   ``soft_fail=True`` skips the sensor instead of failing it.
3. ``remind``: ``trigger_rule="all_skipped"`` runs it only when the sensor was skipped, so the reminder goes out
   the next day, and only to a customer who did not read the invoice. It is the approved template
   ``invoice_reminder`` (body parameters: the invoice number and the amount; create it in the vendor's console),
   since by then the customer's 24-hour window may have closed.

The connection ``itnio_default`` needs the ``webhook_token`` extra and the vendor must push statuses to the
receiver (``python -m airflow_provider_itnio.webhook url itnio_default`` prints the address). Trigger one run per
invoice: ``airflow dags trigger itnio_invoice_read_or_remind --conf '{"phone": "+1 555 010 0200", "invoice":
"INV-2041", "amount": "EUR 120.00"}'``.

On Airflow 2 (the sensor needs the Airflow 3.1+ receiver) the file defines a one-task DAG that fails saying so.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

#: How long to wait for the invoice to be read before the reminder.
READ_WAIT = timedelta(days=1)
PARAMS = {
    "phone": Param("+1 555 010 0200", type="string", description="The customer's WhatsApp number"),
    "invoice": Param("INV-2041", type="string", description="The invoice number"),
    "amount": Param("EUR 120.00", type="string", description="The amount due"),
}

try:
    from airflow_provider_itnio.sensors.itnio import ItnioMessageStatusSensor
except ImportError as err:  # Airflow 2: no receiver, no sensor
    from airflow_provider_itnio.stub_dags import needs_airflow_3_1_dag

    dag = needs_airflow_3_1_dag("itnio_invoice_read_or_remind", err, params=PARAMS, tags=["itnio", "example"])
else:
    from airflow_provider_itnio.operators import ItnioSendDocumentOperator, ItnioSendTemplateOperator

    with DAG(
        dag_id="itnio_invoice_read_or_remind",
        description="Send an invoice; if it is not read within a day, send a template reminder",
        schedule=None,  # one run per invoice
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params=PARAMS,
        tags=["itnio", "example"],
    ):
        # [START howto_sensor_status]
        send_invoice = ItnioSendDocumentOperator(
            task_id="send_invoice",
            recipient="{{ params.phone }}",
            link="https://shop.example.com/invoices/{{ params.invoice }}.pdf",
            filename="{{ params.invoice }}.pdf",
            caption="Invoice {{ params.invoice }}: {{ params.amount }}",
        )
        invoice_read = ItnioMessageStatusSensor(
            task_id="invoice_read",
            message_id=send_invoice.output,
            target_status="read",
            timeout=READ_WAIT.total_seconds(),
            poke_interval=60,
            soft_fail=True,  # not read in time (or failed): skip, and let the reminder run
        )
        remind = ItnioSendTemplateOperator(
            task_id="remind",
            recipient="{{ params.phone }}",
            template_name="invoice_reminder",
            language="en_US",
            components=[
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "{{ params.invoice }}"},
                        {"type": "text", "text": "{{ params.amount }}"},
                    ],
                }
            ],
            trigger_rule="all_skipped",  # only when the sensor was skipped: not read within READ_WAIT
        )
        send_invoice >> invoice_read >> remind
        # [END howto_sensor_status]
