"""
Deploy gate on WhatsApp: the on-call engineer picks where a release goes, among three branches (Airflow 3.1+).

``HITLBranchOperator`` (Airflow's Human-in-the-loop) waits for a choice; ``ItnioHITLNotifier`` sends the
engineer three reply buttons, *Production*, *Staging* and *Cancel*, and a link to the task's page in the UI.
The tap runs the matching branch (``options_mapping``); the other two are skipped. Without an answer within an
hour, the gate falls back to ``Cancel`` (``defaults``).

The connection ``itnio_default`` needs the ``webhook_token`` extra and the vendor must push to the receiver (see
``itnio_refund_approval``). Trigger: ``airflow dags trigger itnio_deploy_gate --conf '{"version": "v2.4.0",
"on_call": "+1 555 010 0200"}'``.

On Airflow 2 (no Human-in-the-loop there) the file defines a one-task DAG that fails saying so.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

PARAMS = {
    "version": Param("v2.4.0", type="string"),
    "on_call": Param("+1 555 010 0200", type="string", description="The on-call engineer's WhatsApp number"),
}
#: The gate's options and the task each one runs.
BRANCHES = {"Production": "deploy_production", "Staging": "deploy_staging", "Cancel": "cancel_release"}

try:
    from airflow.providers.standard.operators.hitl import HITLBranchOperator

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier
except ImportError as err:  # Airflow 2: Human-in-the-loop needs Airflow 3.1+
    from airflow_provider_itnio.stub_dags import needs_airflow_3_1_dag

    dag = needs_airflow_3_1_dag("itnio_deploy_gate", err, params=PARAMS, tags=["itnio", "example"])
else:
    from airflow.sdk import task

    with DAG(
        dag_id="itnio_deploy_gate",
        description="The on-call engineer picks the deploy target with a tap on WhatsApp",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params=PARAMS,
        tags=["itnio", "example"],
    ):
        # [START howto_hitl_branch]
        gate = HITLBranchOperator(
            task_id="choose_target",
            subject="Deploy {{ params.version }}?",
            body="Release {{ params.version }} passed its checks. Where should it go?",
            options=list(BRANCHES),
            options_mapping=BRANCHES,
            defaults="Cancel",
            notifiers=[ItnioHITLNotifier(recipients="{{ params.on_call }}")],
            response_timeout=timedelta(hours=1),
        )
        # [END howto_hitl_branch]

        @task
        def deploy_production(version: str) -> str:
            """Deploy to production (here: only say so)."""
            return f"{version} deployed to production"

        @task
        def deploy_staging(version: str) -> str:
            """Deploy to staging (here: only say so)."""
            return f"{version} deployed to staging"

        @task
        def cancel_release(version: str) -> str:
            """Cancel the release (here: only say so)."""
            return f"{version} cancelled"

        version = "{{ params.version }}"
        gate >> [deploy_production(version), deploy_staging(version), cancel_release(version)]
