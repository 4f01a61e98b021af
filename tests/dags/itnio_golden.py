"""The vendor's examples, one task each, built from the example values (see tests/integration/test_golden.py)."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_itnio.operators import (
    ItnioSendAudioOperator,
    ItnioSendButtonsOperator,
    ItnioSendContactsOperator,
    ItnioSendDocumentOperator,
    ItnioSendImageOperator,
    ItnioSendListOperator,
    ItnioSendLocationOperator,
    ItnioSendLocationRequestOperator,
    ItnioSendStickerOperator,
    ItnioSendTemplateOperator,
    ItnioSendTextOperator,
    ItnioSendVideoOperator,
)

#: One connection per appId of the vendor's examples (tests/support/airflow_home.py names them).
CONN = {app: f"itnio_golden_{app.lower()}" for app in ("DGziZf5u", "7WY0BQ7W", "zRTc00Vs", "xJdRmKR3")}
A, B = "91856321321", "91856321322"  # businessPhone, recipient of the media examples
I_BIZ, I_TO = "6282299953162", "8614718004557"  # of the interactive and contacts examples
LINK = "https://abc.com/log.png"

CONTACT_CARD = {
    "addresses": [
        {
            "street": "STREET",
            "city": "CITY",
            "state": "STATE",
            "zip": "ZIP",
            "country": "COUNTRY",
            "country_code": "COUNTRY_CODE",
            "type": kind,
        }
        for kind in ("HOME", "WORK")
    ],
    "birthday": "1995-01-11",
    "emails": [{"email": "EMAIL", "type": "WORK"}, {"email": "EMAIL", "type": "HOME"}],
    "name": {
        "formatted_name": "NAME",
        "first_name": "FIRST_NAME",
        "last_name": "LAST_NAME",
        "middle_name": "MIDDLE_NAME",
        "suffix": "SUFFIX",
        "prefix": "PREFIX",
    },
    "org": {"company": "COMPANY", "department": "DEPARTMENT", "title": "TITLE"},
    "phones": [
        {"phone": "PHONE_NUMBER", "type": "HOME"},
        {"phone": "PHONE_NUMBER", "type": "WORK", "wa_id": "PHONE_OR_WA_ID"},
    ],
    "urls": [{"url": "URL", "type": "WORK"}, {"url": "URL", "type": "HOME"}],
}


def _sections() -> list[dict[str, object]]:
    return [
        {
            "title": f"SECTION_{s}_TITLE",
            "rows": [
                {
                    "id": f"SECTION_{s}_ROW_{r}_ID",
                    "title": f"SECTION_{s}_ROW_{r}_TITLE",
                    "description": f"SECTION_{s}_ROW_{r}_DESCRIPTION",
                }
                for r in (1, 2)
            ],
        }
        for s in (1, 2)
    ]


with DAG(
    dag_id="itnio_golden",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["test"],
) as dag:
    media = {"itnio_conn_id": CONN["DGziZf5u"], "business_phone": A, "recipient": B}
    inter = {"itnio_conn_id": CONN["7WY0BQ7W"], "business_phone": I_BIZ, "recipient": I_TO}
    ItnioSendTextOperator(task_id="text", body="this is body content", **media)
    ItnioSendTextOperator(
        task_id="text_reply",
        itnio_conn_id=CONN["DGziZf5u"],
        business_phone="17376111187",
        recipient="8618099900000",
        body="this is body content",
        reply_to="1",
    )
    ItnioSendImageOperator(task_id="image", link=LINK, caption="title", **media)
    ItnioSendDocumentOperator(task_id="document", link=LINK, filename="123", caption="title", **media)
    ItnioSendAudioOperator(task_id="audio", link=LINK, **media)
    ItnioSendVideoOperator(task_id="video", link=LINK, caption="title", **media)
    ItnioSendStickerOperator(task_id="sticker", link="https://abc.com/log.webp", **media)
    ItnioSendLocationOperator(
        task_id="location",
        latitude=62.636152267456,  # a number: sent as the string "62.636152267456"
        longitude="104.056640625",
        name="深圳",
        address="深圳市龙岗区",
        **media,
    )
    ItnioSendListOperator(
        task_id="interactive_list",
        header="HEADER_TEXT",
        body="BODY_TEXT",
        footer="FOOTER_TEXT",
        button="BUTTON_TEXT",
        sections=_sections(),
        **inter,
    )
    ItnioSendButtonsOperator(
        task_id="interactive_buttons",
        body="BUTTON_TEXT",
        buttons=[{"id": "22", "title": "one"}, {"id": "33", "title": "two"}],
        **inter,
    )
    ItnioSendLocationRequestOperator(
        task_id="interactive_location_request",
        itnio_conn_id=CONN["zRTc00Vs"],
        business_phone="62822922299527",
        recipient="86173333376738",
        body="广东省深圳市龙岗区",
    )
    ItnioSendContactsOperator(task_id="contacts", contacts=[CONTACT_CARD], **inter)
    ItnioSendTemplateOperator(
        task_id="template",
        itnio_conn_id=CONN["xJdRmKR3"],
        business_phone="91856321412",
        recipient="91856321432",
        template_name="order_update",
        language="en_US",
        components=[
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "A-1042"}, {"type": "text", "text": "shipped"}],
            }
        ],
    )

GOLDEN_TASKS = [t.task_id for t in dag.tasks]
