"""
DAGs sending with a fallback template (the 24-hour window), run by tests/integration/test_window.py.

They use the connection ``itnio_window`` (the test's sandbox, with a ``webhook_token`` and a ``receiver_url``
pointing at the test's API server) and ``itnio_window_unreachable`` (the same, with a ``receiver_url`` nothing
listens on). ``fallback_template`` needs the receiver (Airflow 3.1+): on Airflow 2 the file defines no DAG.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_itnio.messages import Template
from airflow_provider_itnio.window import receiver_available

CONN_ID = "itnio_window"
UNREACHABLE_CONN_ID = "itnio_window_unreachable"
_START = pendulum.datetime(2026, 1, 1, tz="UTC")
_NO_RETRY = {"retries": 0}
#: The fallback template, templated: the recipient's name comes from the run's conf.
FALLBACK = Template.with_body_parameters("order_update", "en_US", ["{{ params.name }}"])

if receiver_available():
    from airflow_provider_itnio.operators import (
        ItnioBatchSendOperator,
        ItnioSendButtonsOperator,
        ItnioSendMessageOperator,
        ItnioSendTextOperator,
    )

    with DAG(
        "itnio_window_single",
        schedule=None,
        start_date=_START,
        default_args=_NO_RETRY,
        params={"recipient": "15550400001", "name": "Ada"},
        tags=["test"],
    ):
        ItnioSendTextOperator(
            task_id="text",
            itnio_conn_id=CONN_ID,
            recipient="{{ params.recipient }}",
            body="Your order shipped, {{ params.name }}.",
            fallback_template=FALLBACK,
        )
        ItnioSendButtonsOperator(
            task_id="buttons",
            itnio_conn_id=CONN_ID,
            recipient="{{ params.recipient }}",
            body="Did it arrive?",
            buttons=[{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}],
            fallback_template={"template": {"name": "delivery_check", "language": {"code": "en_US"}}},
        )
        ItnioSendMessageOperator(
            task_id="generic_template",  # a template: the window is not checked
            itnio_conn_id=CONN_ID,
            recipient="{{ params.recipient }}",
            message=Template("order_update", "en_US"),
            fallback_template=FALLBACK,
        )

    with DAG(
        "itnio_window_unreachable",
        schedule=None,
        start_date=_START,
        default_args=_NO_RETRY,
        params={"recipient": "15550400009", "name": "Bo"},
        tags=["test"],
    ):
        ItnioSendTextOperator(
            task_id="fail",
            itnio_conn_id=UNREACHABLE_CONN_ID,
            recipient="{{ params.recipient }}",
            body="Hello",
            fallback_template=FALLBACK,
        )
        ItnioSendTextOperator(
            task_id="template_anyway",
            itnio_conn_id=UNREACHABLE_CONN_ID,
            recipient="{{ params.recipient }}",
            body="Hello",
            fallback_template=FALLBACK,
            window_unknown="template",
        )

    with DAG(
        "itnio_window_batch",
        schedule=None,
        start_date=_START,
        default_args=_NO_RETRY,
        params={"rows": []},
        render_template_as_native_obj=True,
        tags=["test"],
    ):
        ItnioBatchSendOperator(
            task_id="campaign",
            itnio_conn_id=CONN_ID,
            rows="{{ params.rows }}",
            message={"type": "text", "text": {"body": "Hi {{ row.name }}, your order shipped."}},
            fallback_template=Template.with_body_parameters("order_update", "en_US", ["{{ row.name }}"]),
            concurrency=2,
        )
