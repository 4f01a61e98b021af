"""Apache Airflow provider for the itniotech WhatsApp Business API."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow (entry point ``apache_airflow_provider``)."""
    from airflow_provider_itnio.connection_fields import connection_type_info  # not needed by DAG files
    from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS

    info: dict[str, Any] = {
        "package-name": "airflow-provider-itnio",
        "name": "itniotech WhatsApp",
        "description": "Send WhatsApp Business messages through the `itniotech <https://www.itniotech.com/>`__ API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "itniotech WhatsApp",
                "external-doc-url": "https://www.itniotech.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "itniotech WhatsApp",
                "python-modules": ["airflow_provider_itnio.hooks.itnio"],
            }
        ],
        "operators": [
            {
                "integration-name": "itniotech WhatsApp",
                "python-modules": ["airflow_provider_itnio.operators.itnio", "airflow_provider_itnio.operators.batch"],
            }
        ],
        "sensors": [
            {
                "integration-name": "itniotech WhatsApp",
                "python-modules": ["airflow_provider_itnio.sensors.itnio"],  # Airflow 3.1+
            }
        ],
        "triggers": [
            {
                "integration-name": "itniotech WhatsApp",
                "python-modules": ["airflow_provider_itnio.triggers.itnio"],  # Airflow 3.1+
            }
        ],
        "connection-types": [connection_type_info()],
        "notifications": [
            "airflow_provider_itnio.notifications.itnio.ItnioNotifier",
            "airflow_provider_itnio.notifications.hitl.ItnioHITLNotifier",  # Airflow 3.1+
        ],
        "db-managers": ["airflow_provider_itnio.webhook.db_manager.ItnioDBManager"],  # Airflow 3.2+ runs it
        "config": {
            "itnio": {
                "description": "The itniotech WhatsApp provider.",
                "options": {
                    "webhook_retention_days": {
                        "description": "Days the webhook receiver keeps delivery statuses and inbound messages "
                        "(Airflow 3.1+): `python -m airflow_provider_itnio.webhook cleanup` deletes what is older "
                        "(its --older-than-days overrides this). Run it daily, e.g. from a DAG.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "30",
                        "default": "90",
                    },
                    "webhook_asset_events_interval": {
                        "description": "Seconds between the webhook receiver's writes of asset events while pushes "
                        "keep coming (Airflow 3.1+). A push is answered once it is recorded with its asset event in "
                        "the provider's outbox; the API server's writer turns the outbox into Airflow asset events "
                        "at most this often (at once after a quiet spell), many per transaction. Smaller: DAGs "
                        "scheduled on pushes start sooner under load, and each push costs more CPU.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "1",
                        "default": "0.25",
                    },
                    "batch_results_path": {
                        "description": "Where ItnioBatchSendOperator writes the full result (message_ids, errors) "
                        "of a batch above inline_results_max_rows rows, one object per task instance: an Object "
                        "Storage URL (s3://<conn_id>@bucket/prefix, gs://..., file:///shared/itnio). Empty: "
                        "file://$AIRFLOW_HOME/itnio/results. On distributed workers, storage every worker reaches.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://aws_default@my-bucket/itnio/results",
                        "default": "",
                    },
                },
            },
        },
    }
    if AIRFLOW_V_3_1_PLUS:  # `airflow itnio ...`; older Airflow (2.11's schema has no "cli") uses `python -m`
        info["cli"] = ["airflow_provider_itnio.webhook.cli.get_itnio_cli_commands"]
    return info
