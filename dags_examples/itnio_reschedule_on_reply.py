"""
Appointment confirmation with a *Reschedule* button, and a DAG that a customer's tap starts (Airflow 3.1+).

Two DAGs:

- ``itnio_appointment_confirm`` (one run per appointment) sends the patient a reply-button message, *Keep* or
  *Reschedule*. Each button's id carries the appointment's reference (``reschedule:APT-311``), so the answer says
  which appointment it is about without any lookup.
- ``itnio_reschedule_on_reply`` is scheduled on ``inbound_messages("itnio_default", reply_ids="reschedule:*")``:
  the inbound messages narrowed to taps on a button whose id starts with ``reschedule:``, each an asset event
  recorded by the webhook receiver on the API server. Other messages (a *Keep* tap, a text, a tap on an approval's
  button) start no run. For each *Reschedule* tap among the run's events, it answers in context (``reply_to`` = the
  tap's ``message_id``, so WhatsApp shows the answer quoting the tap) with a list of free slots for that
  appointment. The tap opened the customer's 24-hour window, so the list, a session message, is delivered.

The connection ``itnio_default`` needs the ``webhook_token`` extra and the vendor must push to the receiver
(``python -m airflow_provider_itnio.webhook url itnio_default`` prints the address). A re-pushed tap records no
second event, so it starts nothing twice. Trigger the first DAG with: ``airflow dags trigger
itnio_appointment_confirm --conf '{"phone": "+1 555 010 0200", "name": "Ada", "appointment_id": "APT-311",
"when": "Tue 3 Mar, 10:30"}'`` (the customer must have written in the last 24 hours: the buttons are a session
message).

On Airflow 2 the confirmation DAG is the same; the reply DAG (assets fed by the receiver need Airflow 3.1+) is a
one-task DAG that fails saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_itnio.operators import ItnioSendButtonsOperator, ItnioSendListOperator

#: The prefix of the *Reschedule* button's id; the appointment's reference follows it.
RESCHEDULE = "reschedule:"
KEEP = "keep:"
#: The free slots offered (a real flow would read them from the booking system): (row suffix, title, description).
SLOTS = (
    ("0900", "Wed 09:00", "Dr. Patel"),
    ("1100", "Wed 11:00", "Dr. Patel"),
    ("1400", "Thu 14:00", "Dr. Okafor"),
    ("1630", "Thu 16:30", "Dr. Okafor"),
)


def reschedule_requests(extras: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """
    Return one list message's arguments per *Reschedule* tap among inbound-message events' ``extra``.

    Each item has ``recipient`` (the customer's digits), ``reply_to`` (the tap's ``message_id``, to answer in
    context) and ``sections`` (the free slots, row ids ``<appointment>-<slot>``), ready for ``expand_kwargs``.
    A message seen twice (the same ``message_id``) gives one item.

    :param extras: The events' ``extra`` dicts (``message_id``, ``from``, ``reply``...).
    """
    requests: list[dict[str, Any]] = []
    seen: set[str] = set()
    for extra in extras:
        reply = extra.get("reply") or {}
        reply_id = str(reply.get("id") or "")
        message_id = str(extra.get("message_id") or "")
        if not reply_id.startswith(RESCHEDULE) or not message_id or message_id in seen:
            continue
        seen.add(message_id)
        appointment = reply_id[len(RESCHEDULE) :]
        rows = [{"id": f"{appointment}-{suffix}", "title": title, "description": who} for suffix, title, who in SLOTS]
        requests.append(
            {
                "recipient": str(extra["from"]),
                "reply_to": message_id,
                "sections": [{"title": f"Free slots for {appointment}"[:24], "rows": rows}],
            }
        )
    return requests


with DAG(
    dag_id="itnio_appointment_confirm",
    description="Ask a patient to keep or reschedule an appointment (reply buttons)",
    schedule=None,  # one run per appointment
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "phone": Param("+1 555 010 0200", type="string", description="The patient's WhatsApp number"),
        "name": Param("Ada", type="string", description="The patient's first name"),
        "appointment_id": Param("APT-311", type="string", description="The booking's reference"),
        "when": Param("Tue 3 Mar, 10:30", type="string", description="The appointment's date and time"),
    },
    tags=["itnio", "example"],
):
    # [START howto_reply_button_ids]
    ItnioSendButtonsOperator(
        task_id="ask_keep_or_reschedule",
        recipient="{{ params.phone }}",
        header="Your appointment",
        body="Hi {{ params.name }}, your appointment {{ params.appointment_id }} is on {{ params.when }}. "
        "Does it still suit you?",
        buttons=[
            {"id": KEEP + "{{ params.appointment_id }}", "title": "Keep"},
            {"id": RESCHEDULE + "{{ params.appointment_id }}", "title": "Reschedule"},
        ],
    )
    # [END howto_reply_button_ids]

try:
    from airflow_provider_itnio.assets import inbound_messages
except ImportError as err:  # Airflow 2: no receiver, no asset events from it
    from airflow_provider_itnio.stub_dags import needs_airflow_3_1_dag

    dag = needs_airflow_3_1_dag("itnio_reschedule_on_reply", err, tags=["itnio", "example"])
else:
    from airflow.sdk import task

    # [START howto_asset_inbound_narrowed]
    with DAG(
        dag_id="itnio_reschedule_on_reply",
        description="Answer a Reschedule tap in context with a list of free slots",
        # a run for the Reschedule taps since the last run; no other message starts one
        schedule=inbound_messages("itnio_default", reply_ids=f"{RESCHEDULE}*"),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["itnio", "example"],
    ):

        @task
        def reschedule_taps(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
            """Return the list messages to send: one per *Reschedule* tap among the run's inbound messages."""
            extras = [
                dict(event.extra or {}) for events in (triggering_asset_events or {}).values() for event in events
            ]
            requests = reschedule_requests(extras)
            print(f"{len(extras)} inbound message(s), {len(requests)} Reschedule tap(s)")
            return requests

        ItnioSendListOperator.partial(
            task_id="offer_slots",
            body="No problem. Pick a new time and we will move your appointment.",
            button="See free slots",
            footer="Slots are held for 2 hours",
        ).expand_kwargs(reschedule_taps())
    # [END howto_asset_inbound_narrowed]
