"""
New-collection announcement to a customer who opted in, one message of each media kind:

1. the collection's video, with a caption,
2. the lookbook cover image,
3. a voice note from the designer (audio),
4. a sticker,
5. the personal stylist's contact card (so the customer can save it and call or mail them),
6. this week's offer: ``build_offer`` computes it (a stand-in for the pricing system) and returns the message in
   the API's dict form, which :class:`ItnioSendMessageOperator` sends as it gets it through XCom.

Media are sent by their public https URLs: the API fetches them (video and audio at most 16 MB, image 5 MB,
sticker a webp of at most 100 KB).

The campaign system triggers one run per customer when a collection launches (``--conf '{"phone": ...,
"collection": "autumn-26"}'``). The DAG has no schedule: a scheduled run could only send the params' default
collection to the default customer, and unpausing the DAG (the trigger dialog's default "Unpause on trigger") would
start such a run next to the one triggered, sending everything twice. Unpausing starts nothing.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_itnio.operators import (
    ItnioSendAudioOperator,
    ItnioSendContactsOperator,
    ItnioSendImageOperator,
    ItnioSendMessageOperator,
    ItnioSendStickerOperator,
    ItnioSendVideoOperator,
)

MEDIA = "https://cdn.shop.example.com/collections/{{ params.collection }}"

# [START howto_contact_card]
STYLIST = {
    "name": {"formatted_name": "Mia Chen", "first_name": "Mia", "last_name": "Chen"},
    "org": {"company": "Example Shop", "department": "Personal styling", "title": "Stylist"},
    "phones": [{"phone": "+1 555 010 0500", "type": "WORK"}],
    "emails": [{"email": "mia.chen@shop.example.com", "type": "WORK"}],
    "urls": [{"url": "https://shop.example.com/stylists/mia", "type": "WORK"}],
}
# [END howto_contact_card]


@task
def build_offer(**context: Any) -> dict[str, Any]:
    """
    Return this week's offer for the collection, as a message in the API's dict form.

    :param context: The task's context (``params.collection``, ``logical_date``).
    """
    collection = context["params"]["collection"]
    week = context["logical_date"].strftime("%G-W%V") if context.get("logical_date") else "this week"
    code = f"{collection.upper().replace('-', '')}10"
    return {
        "type": "text",
        "text": {"body": f"{week}: 10% off the {collection} collection with code {code}, until Sunday."},
    }


with DAG(
    dag_id="itnio_new_collection",
    description="Announce a new collection: video, image, voice note, sticker, stylist's card, offer",
    schedule=None,  # one run per customer and launch, triggered; unpausing starts no run
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "phone": Param("+1 555 010 0200", type="string", description="The customer's WhatsApp number"),
        "collection": Param("spring-2026", type="string", pattern="^[a-z0-9-]+$"),
    },
    default_args={"recipient": "{{ params.phone }}"},
    tags=["itnio", "example"],
) as dag:
    # [START howto_operator_media]
    video = ItnioSendVideoOperator(
        task_id="video", link=f"{MEDIA}/teaser.mp4", caption="Meet the {{ params.collection }} collection"
    )
    image = ItnioSendImageOperator(task_id="image", link=f"{MEDIA}/lookbook.jpg", caption="The lookbook")
    audio = ItnioSendAudioOperator(task_id="audio", link=f"{MEDIA}/designer-note.ogg")
    sticker = ItnioSendStickerOperator(task_id="sticker", link=f"{MEDIA}/sticker.webp")
    # [END howto_operator_media]
    # [START howto_operator_contacts]
    stylist = ItnioSendContactsOperator(task_id="stylist", contacts=[STYLIST])
    # [END howto_operator_contacts]
    # [START howto_operator_message]
    offer_message: Any = build_offer()  # an XComArg: the dict reaches the operator when it runs
    offer = ItnioSendMessageOperator(task_id="offer", message=offer_message)
    # [END howto_operator_message]

    video >> image >> audio >> sticker >> stylist >> offer
