"""
Message models of the itniotech WhatsApp API.

No Airflow import here. Every model validates every rule of the spec when it is built and raises
:class:`~airflow_provider_itnio.errors.ItnioValidationError` naming the field path (as in the request body,
e.g. ``interactive.action.buttons[1].reply.title``), the rule, the value's problem and, where one exists,
the vendor status code the request would have been answered with.

Messages (each knows its ``endpoint`` and its type-specific body part, :meth:`Message.to_payload`)::

    Text  Image  Document  Audio  Video  Sticker  Location            session ("custom") messages
    ListMessage(Section(Row))  ReplyButtons(Button)  LocationRequest  interactive session messages
    Contacts(Contact(Name, Address, Email, Org, Phone, Url))          contact cards
    Template                                                          template messages (any time)

Parts of a message (rows, sections, buttons, contact cards and their pieces) may be given as the part models
or as plain dicts in the API's shape; they are converted and validated. A part built on its own reports
field paths relative to itself (``reply.title``); inside a message the path is the full one.

Optional text fields that are ``None``, empty or whitespace-only are left out of the payload (never sent
as ``null``), so an optional templated argument that renders to ``""`` simply drops the field.

Import every name from this package (``from airflow_provider_itnio.messages import Text``); its modules, by
concern, in the order a message meets them:

* :mod:`~airflow_provider_itnio.messages.checks` - the field checks every family shares, the limits
  (``MAX_TEXT_BODY``, ``MAX_BUTTON_TITLE``, ...) and the vendor's status codes for a missing or malformed value.
* :mod:`~airflow_provider_itnio.messages.base` - the :class:`Message` base, the parts' base, the endpoints
  (:data:`CUSTOM_ENDPOINT`, :data:`TEMPLATE_ENDPOINT`) and the models' dict form.
* The families, as the vendor's spec groups them: :mod:`~airflow_provider_itnio.messages.simple` (text, media,
  location), :mod:`~airflow_provider_itnio.messages.interactive` (list, buttons, location request),
  :mod:`~airflow_provider_itnio.messages.contacts` (contact cards), :mod:`~airflow_provider_itnio.messages.template`.
* :mod:`~airflow_provider_itnio.messages.wire` - the whole request body (:func:`build_request_body`) and the
  model for the API's dict form (:func:`message_from_dict`).

Phone numbers (the recipient and business numbers, with libphonenumber) are :mod:`airflow_provider_itnio.phones`;
:func:`normalize_phone` and the digit limits are re-exported here, where they were first defined.

The models and functions report this package as their module (``Text.__module__`` is
``airflow_provider_itnio.messages``, as when it was one file): pickles and Airflow's XCom serialisation record a
class by that name (``{"__classname__": "airflow_provider_itnio.messages.Text", ...}``), and the names stored and
allowed (``allowed_deserialization_classes``) before the split keep meaning the same classes.
"""

from __future__ import annotations

# Names the models' (string) annotations use: typing.get_type_hints() resolves a class's annotations in the
# namespace of its __module__, which is this package (see the end of the file).
from collections.abc import Mapping, Sequence  # noqa: F401
from typing import Any, ClassVar  # noqa: F401

from airflow_provider_itnio.messages.base import CUSTOM_ENDPOINT, TEMPLATE_ENDPOINT, Message

# The limits, importable from here as when this package was one module.
from airflow_provider_itnio.messages.checks import MAX_BUTTON_ID as MAX_BUTTON_ID
from airflow_provider_itnio.messages.checks import MAX_BUTTON_TITLE as MAX_BUTTON_TITLE
from airflow_provider_itnio.messages.checks import MAX_BUTTONS as MAX_BUTTONS
from airflow_provider_itnio.messages.checks import MAX_CAPTION as MAX_CAPTION
from airflow_provider_itnio.messages.checks import MAX_FOOTER as MAX_FOOTER
from airflow_provider_itnio.messages.checks import MAX_HEADER as MAX_HEADER
from airflow_provider_itnio.messages.checks import MAX_INTERACTIVE_BODY as MAX_INTERACTIVE_BODY
from airflow_provider_itnio.messages.checks import MAX_LIST_BUTTON as MAX_LIST_BUTTON
from airflow_provider_itnio.messages.checks import MAX_ROW_DESCRIPTION as MAX_ROW_DESCRIPTION
from airflow_provider_itnio.messages.checks import MAX_ROW_ID as MAX_ROW_ID
from airflow_provider_itnio.messages.checks import MAX_ROW_TITLE as MAX_ROW_TITLE
from airflow_provider_itnio.messages.checks import MAX_ROWS as MAX_ROWS
from airflow_provider_itnio.messages.checks import MAX_SECTION_TITLE as MAX_SECTION_TITLE
from airflow_provider_itnio.messages.checks import MAX_SECTIONS as MAX_SECTIONS
from airflow_provider_itnio.messages.checks import MAX_TEMPLATE_NAME as MAX_TEMPLATE_NAME
from airflow_provider_itnio.messages.checks import MAX_TEXT_BODY as MAX_TEXT_BODY
from airflow_provider_itnio.messages.contacts import Address, Contact, Contacts, Email, Name, Org, Phone, Url
from airflow_provider_itnio.messages.interactive import Button, ListMessage, LocationRequest, ReplyButtons, Row, Section
from airflow_provider_itnio.messages.simple import Audio, Document, Image, Location, Sticker, Text, Video
from airflow_provider_itnio.messages.template import Template
from airflow_provider_itnio.messages.wire import build_request_body, message_from_dict

# Phone numbers have their own module (libphonenumber); re-exported here, where they were first defined.
from airflow_provider_itnio.phones import PHONE_MAX_DIGITS as PHONE_MAX_DIGITS
from airflow_provider_itnio.phones import PHONE_MIN_DIGITS as PHONE_MIN_DIGITS
from airflow_provider_itnio.phones import normalize_phone

__all__ = [
    "CUSTOM_ENDPOINT",
    "TEMPLATE_ENDPOINT",
    "Address",
    "Audio",
    "Button",
    "Contact",
    "Contacts",
    "Document",
    "Email",
    "Image",
    "ListMessage",
    "Location",
    "LocationRequest",
    "Message",
    "Name",
    "Org",
    "Phone",
    "ReplyButtons",
    "Row",
    "Section",
    "Sticker",
    "Template",
    "Text",
    "Url",
    "Video",
    "build_request_body",
    "message_from_dict",
    "normalize_phone",
]


def _keep_home() -> None:
    """Give the classes and functions defined in this package's modules this package as their ``__module__``."""
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith(f"{__name__}."):
            obj.__module__ = __name__


_keep_home()
