"""
Appointment reminder, the message a clinic (or a garage, a salon...) sends the morning before each appointment:

1. a text reminder with the date and time,
2. the clinic's location pin, as a reply to the reminder (its messageId comes through XCom),
3. an interactive list of other time slots, for a patient who needs to move the appointment (the row the
   patient taps comes back to the business's webhook with its ``id``),
4. a location request, so that the clinic's shuttle can pick the patient up.

Each run reminds one patient; a nightly job (or the booking system) triggers it with their details::

    airflow dags trigger itnio_appointment_reminder \\
        --conf '{"phone": "+1 555 010 0200", "name": "Ada", "appointment_id": "APT-311", "when": "Tue 3 Mar, 10:30"}'

The DAG has no schedule (``schedule=None``): each run is one patient's, so a scheduled run could only remind the
params' default patient, and unpausing the DAG (the trigger dialog's default "Unpause on trigger") would start
such a run next to the one triggered: the patient would get every message twice. Unpausing starts nothing.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_itnio.operators import (
    ItnioSendListOperator,
    ItnioSendLocationOperator,
    ItnioSendLocationRequestOperator,
    ItnioSendTextOperator,
)

CLINIC = {
    "name": "Harbour Dental Clinic",
    "address": "12 Quay Street, Auckland 1010",
    "latitude": "-36.8432",
    "longitude": "174.7665",
}

with DAG(
    dag_id="itnio_appointment_reminder",
    description="Remind a patient of tomorrow's appointment: where it is, other slots, a pick-up offer",
    schedule=None,  # one run per patient, triggered by the nightly job; unpausing starts no run
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "phone": Param("+1 555 010 0200", type="string", description="The patient's WhatsApp number"),
        "name": Param("Ada", type="string", description="The patient's first name"),
        "appointment_id": Param("APT-311", type="string", description="The booking's reference"),
        "when": Param("Tue 3 Mar, 10:30", type="string", description="The appointment's date and time"),
    },
    tags=["itnio", "example"],
) as dag:
    reminder = ItnioSendTextOperator(
        task_id="reminder",
        recipient="{{ params.phone }}",
        body=(
            "Hi {{ params.name }}, this is a reminder of your appointment {{ params.appointment_id }} at "
            + CLINIC["name"]
            + " on {{ params.when }}. Reply to this message if you have any question."
        ),
    )

    # [START howto_operator_location]
    clinic_location = ItnioSendLocationOperator(
        task_id="clinic_location",
        recipient="{{ params.phone }}",
        reply_to=reminder.output,  # the pin quotes the reminder
        **CLINIC,
    )
    # [END howto_operator_location]

    # [START howto_operator_list]
    other_slots = ItnioSendListOperator(
        task_id="other_slots",
        recipient="{{ params.phone }}",
        header="Need another time?",
        body="If {{ params.when }} no longer suits you, pick another slot and we will move your appointment.",
        footer="Slots are held for 2 hours",
        button="See free slots",
        sections=[
            {
                "title": "Morning",
                "rows": [
                    {"id": "{{ params.appointment_id }}-0900", "title": "09:00", "description": "Dr. Patel"},
                    {"id": "{{ params.appointment_id }}-1100", "title": "11:00", "description": "Dr. Patel"},
                ],
            },
            {
                "title": "Afternoon",
                "rows": [
                    {"id": "{{ params.appointment_id }}-1400", "title": "14:00", "description": "Dr. Okafor"},
                    {"id": "{{ params.appointment_id }}-1630", "title": "16:30", "description": "Dr. Okafor"},
                ],
            },
        ],
    )
    # [END howto_operator_list]

    # [START howto_operator_location_request]
    pickup = ItnioSendLocationRequestOperator(
        task_id="pickup",
        recipient="{{ params.phone }}",
        body="Would you like a free ride? Share your location and our shuttle will pick you up 30 minutes before.",
    )
    # [END howto_operator_location_request]

    reminder >> clinic_location >> other_slots >> pickup
