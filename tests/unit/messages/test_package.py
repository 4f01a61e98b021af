"""
The messages package's layout (issue 16): one module per concern, and every name and qualified name as before.

``airflow_provider_itnio.messages`` was one module. Its names are importable from the package as before, without a
warning; the models and functions keep the package as their ``__module__``, so that what pickles and Airflow's XCom
serialisation recorded (``airflow_provider_itnio.messages.Text``) is what they record now; the package loads no
Airflow and no libphonenumber.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import pickletools
import re
import subprocess
import sys
import textwrap
import typing
from typing import Any

import pytest

from airflow_provider_itnio import messages

#: The limits the one-module ``messages`` had (besides its ``__all__``) -> the module defining each now.
LIMITS = {
    **dict.fromkeys(
        (
            "MAX_TEXT_BODY",
            "MAX_CAPTION",
            "MAX_INTERACTIVE_BODY",
            "MAX_HEADER",
            "MAX_FOOTER",
            "MAX_LIST_BUTTON",
            "MAX_SECTIONS",
            "MAX_ROWS",
            "MAX_SECTION_TITLE",
            "MAX_ROW_ID",
            "MAX_ROW_TITLE",
            "MAX_ROW_DESCRIPTION",
            "MAX_BUTTONS",
            "MAX_BUTTON_ID",
            "MAX_BUTTON_TITLE",
            "MAX_TEMPLATE_NAME",
        ),
        "airflow_provider_itnio.messages.checks",
    ),
    "PHONE_MAX_DIGITS": "airflow_provider_itnio.phones",
    "PHONE_MIN_DIGITS": "airflow_provider_itnio.phones",
}
#: Each name of ``__all__`` -> the module defining it now.
HOMES = {
    **dict.fromkeys(("CUSTOM_ENDPOINT", "TEMPLATE_ENDPOINT", "Message"), "base"),
    **dict.fromkeys(("Text", "Image", "Document", "Audio", "Video", "Sticker", "Location"), "simple"),
    **dict.fromkeys(("Row", "Section", "ListMessage", "Button", "ReplyButtons", "LocationRequest"), "interactive"),
    **dict.fromkeys(("Name", "Address", "Email", "Org", "Phone", "Url", "Contact", "Contacts"), "contacts"),
    "Template": "template",
    **dict.fromkeys(("build_request_body", "message_from_dict"), "wire"),
}
#: One message of each type, as the API's dict form (built with :func:`message_from_dict`).
SAMPLES: list[dict[str, Any]] = [
    {"type": "text", "text": {"body": "hi"}},
    {"type": "image", "image": {"link": "https://abc.com/a.png", "caption": "A"}},
    {"type": "document", "document": {"link": "https://abc.com/a.pdf", "filename": "a.pdf"}},
    {"type": "audio", "audio": {"link": "https://abc.com/a.mp3"}},
    {"type": "video", "video": {"link": "https://abc.com/a.mp4"}},
    {"type": "sticker", "sticker": {"link": "https://abc.com/a.webp"}},
    {"type": "location", "location": {"latitude": "1.5", "longitude": "-2", "name": "N", "address": "A"}},
    {
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": "Pick"},
            "action": {"button": "Open", "sections": [{"title": "S", "rows": [{"id": "r1", "title": "One"}]}]},
        },
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Yes?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]},
        },
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "location_request_message",
            "body": {"text": "Where?"},
            "action": {"name": "send_location"},
        },
    },
    {"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann"}, "phones": [{"phone": "+1 555"}]}]},
    {"template": {"name": "order_update", "language": {"code": "en_US"}}},
]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (nothing imported yet), failing the test when it fails."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return result


def test_every_name_of_the_one_module_imports_from_the_package_without_a_warning() -> None:
    names = [*messages.__all__, *LIMITS]
    result = _python(f"from airflow_provider_itnio.messages import {', '.join(names)}; print('imported')")
    assert result.stdout.strip() == "imported"


@pytest.mark.parametrize(("name", "home"), sorted(LIMITS.items()))
def test_every_limit_is_the_defining_modules(name: str, home: str) -> None:
    assert getattr(messages, name) == getattr(importlib.import_module(home), name)
    assert isinstance(getattr(messages, name), int)


@pytest.mark.parametrize(("name", "home"), sorted(HOMES.items()))
def test_every_model_is_the_defining_modules_object_and_keeps_the_packages_name(name: str, home: str) -> None:
    obj = getattr(messages, name)
    assert obj is getattr(importlib.import_module(f"airflow_provider_itnio.messages.{home}"), name)
    if callable(obj):
        assert (obj.__module__, obj.__qualname__) == ("airflow_provider_itnio.messages", name)


def test_the_phone_functions_keep_their_own_module() -> None:
    from airflow_provider_itnio import phones

    assert messages.normalize_phone is phones.normalize_phone
    assert messages.normalize_phone.__module__ == "airflow_provider_itnio.phones"
    assert set(HOMES) | {"normalize_phone"} == set(messages.__all__)


@pytest.mark.parametrize("name", sorted(n for n in HOMES if isinstance(getattr(messages, n), type)))
def test_the_models_type_hints_resolve(name: str) -> None:
    """``typing.get_type_hints`` reads a class's annotations in its ``__module__``'s namespace: the package's."""
    hints = typing.get_type_hints(getattr(messages, name))
    assert hints and all(hint is not None for hint in hints.values())


@pytest.mark.parametrize("data", SAMPLES, ids=[str(s.get("type", "template")) for s in SAMPLES])
def test_a_pickled_model_names_the_package(data: dict[str, Any]) -> None:
    model = messages.message_from_dict(data)
    dumped = pickle.dumps(model)
    strings = [arg for _, arg, _ in pickletools.genops(dumped) if isinstance(arg, str)]
    assert strings[:2] == ["airflow_provider_itnio.messages", type(model).__name__]  # the global, as it was
    assert not [name for name in strings if name.startswith("airflow_provider_itnio.messages.")]  # no submodule
    assert pickle.loads(dumped) == model


def test_airflow_serialises_the_models_by_the_packages_name() -> None:
    """A ``@task`` returning a model: XCom records ``airflow_provider_itnio.messages.<Class>`` and reads it back."""
    classes = sorted({type(messages.message_from_dict(data)).__name__ for data in SAMPLES})
    allowed = " ".join(f"airflow_provider_itnio.messages.{name}" for name in classes)
    result = _python(
        f"""
        import json, warnings
        warnings.simplefilter("ignore")  # Airflow's own deprecations are not this test's business
        try:
            from airflow.sdk.serde import deserialize, serialize
        except ImportError:  # Airflow 2
            from airflow.serialization.serde import deserialize, serialize
        from airflow_provider_itnio.messages import message_from_dict

        for data in json.loads({json.dumps(SAMPLES)!r}):
            model = message_from_dict(data)
            stored = json.loads(json.dumps(serialize(model)))
            assert deserialize(stored) == model, (stored, model)
            print(stored["__classname__"])
        """,
        AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES=allowed,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    assert result.stdout.split() == [
        f"airflow_provider_itnio.messages.{type(messages.message_from_dict(d)).__name__}" for d in SAMPLES
    ]


def test_the_package_loads_no_airflow_and_no_libphonenumber() -> None:
    """The models are pure Python; libphonenumber is imported when the first number is parsed."""
    result = _python(
        """
        import sys

        import airflow_provider_itnio.messages

        print(sorted(m for m in sys.modules if m.split(".")[0] in ("airflow", "phonenumbers")))
        """
    )
    assert result.stdout.strip() == "[]"


def test_a_serialised_dag_names_no_module_of_the_models() -> None:
    """The DAG serializer keeps a model in a template field as its ``repr`` (no module): the split changes nothing."""
    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2
        from airflow import DAG
    objects = importlib.import_module("airflow.serialization.serialized_objects")
    serializer = getattr(objects, "DagSerialization", None) or objects.SerializedDAG  # Airflow 3 or 2

    from airflow_provider_itnio.operators import ItnioSendButtonsOperator, ItnioSendListOperator

    # the operators' arguments may hold the part models (annotated as the API's dicts, which the models also take)
    sections: Any = [messages.Section("S", [messages.Row("r", "One")])]
    buttons: Any = [messages.Button("y", "Y")]
    with DAG("itnio_models_in_template_fields", schedule=None) as dag:
        ItnioSendListOperator(task_id="l", recipient="+447911123456", body="b", button="Open", sections=sections)
        ItnioSendButtonsOperator(task_id="b", recipient="+447911123456", body="b", buttons=buttons)
    serialised = json.dumps(serializer.to_dict(dag))
    assert set(re.findall(r"airflow_provider_itnio[\w.]*", serialised)) == {"airflow_provider_itnio.operators.itnio"}
    assert repr(sections[0]) in serialised  # Airflow 3 keeps the list, Airflow 2 the list's str()
