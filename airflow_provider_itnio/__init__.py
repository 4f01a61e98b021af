"""Apache Airflow provider for the itniotech WhatsApp Business API."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow (entry point ``apache_airflow_provider``)."""
    return {
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
                "python-modules": ["airflow_provider_itnio.operators.itnio"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_itnio.hooks.itnio.ItnioHook",
                "hook-name": "itniotech WhatsApp",
                "connection-type": "itnio",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "API Key", "password": "API Secret", "host": "Base URL"},
                    "placeholders": {
                        "login": "bDqJFiq9",
                        "password": "your API secret",
                        "host": "https://api.itniotech.com",
                        "app_id": "DGziZf5u",
                        "business_phone": "91856321321",
                        "timeout": "30",
                        "verify": "true",
                        "proxy": "http://proxy.example.com:3128",
                    },
                },
                "conn-fields": {
                    "app_id": {
                        "label": "App ID",
                        "schema": {"type": ["string", "null"]},
                        "description": "Required. The application id (appId) from the itniotech console.",
                    },
                    "business_phone": {
                        "label": "Business phone",
                        "schema": {"type": ["string", "null"]},
                        "description": "Default sender number, digits only (7-14); operators may override it.",
                    },
                    "timeout": {
                        "label": "Timeout",
                        "schema": {"type": ["integer", "null"]},
                        "description": "Seconds to wait for the API's answer (default 30).",
                    },
                    "verify": {
                        "label": "Verify TLS",
                        "schema": {"type": ["string", "null"]},
                        "description": "true (default), false, or the path of a CA bundle.",
                    },
                    "proxy": {
                        "label": "Proxy",
                        "schema": {"type": ["string", "null"]},
                        "description": "Optional HTTPS proxy URL for calls to the API.",
                    },
                },
            }
        ],
        "notifications": ["airflow_provider_itnio.notifications.itnio.ItnioNotifier"],
    }
