"""
Contact cards: :class:`~airflow_provider_itnio.messages.Contacts` holds one or more
:class:`~airflow_provider_itnio.messages.Contact`, each with a :class:`~airflow_provider_itnio.messages.Name` and
optional addresses, e-mails, organisation, phone numbers, web addresses and birthday.

No Airflow import here. A card's phone numbers are kept as written (they are shown, not dialled); the recipient's
and business numbers are checked by :mod:`airflow_provider_itnio.phones` instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, ClassVar, Self

from airflow_provider_itnio._problems import fail as _fail
from airflow_provider_itnio._problems import show as _show
from airflow_provider_itnio.messages.base import Message, _dump, _Part, _set
from airflow_provider_itnio.messages.checks import (
    _EMPTY,
    _is_blank,
    _number_text,
    _one_of,
    _optional_text,
    _text,
)

_CONTACT_TYPES = ("HOME", "WORK")
_PHONE_TYPES = ("CELL", "MAIN", "IPHONE", "HOME", "WORK")
_BIRTHDAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Name(_Part):
    """
    The name on a contact card.

    :param formatted_name: Full name as displayed (required).
    :param first_name: Optional first name.
    :param last_name: Optional last name.
    :param middle_name: Optional middle name.
    :param suffix: Optional name suffix.
    :param prefix: Optional name prefix.
    """

    formatted_name: str
    first_name: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    suffix: str | None = None
    prefix: str | None = None

    def _check(self) -> Self:
        optional = ("first_name", "last_name", "middle_name", "suffix", "prefix")
        return replace(
            self,
            formatted_name=_text(self.formatted_name, "formatted_name"),
            **{name: _optional_text(getattr(self, name), name) for name in optional},
        )


@dataclass(frozen=True)
class Address(_Part):
    """
    A postal address on a contact card (every field optional).

    :param street: Street and number.
    :param city: City.
    :param state: State or province.
    :param zip: Postal code.
    :param country: Country name.
    :param country_code: Country code, e.g. ``US``.
    :param type: ``HOME`` or ``WORK``.
    """

    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code: str | None = None
    type: str | None = None

    def _check(self) -> Self:
        texts = ("street", "city", "state", "zip", "country", "country_code")
        return replace(
            self,
            type=_one_of(self.type, "type", _CONTACT_TYPES),
            **{name: _optional_text(getattr(self, name), name) for name in texts},
        )


@dataclass(frozen=True)
class Email(_Part):
    """
    An e-mail address on a contact card.

    :param email: The address (required).
    :param type: Optional ``HOME`` or ``WORK``.
    """

    email: str
    type: str | None = None

    def _check(self) -> Self:
        return replace(self, email=_text(self.email, "email"), type=_one_of(self.type, "type", _CONTACT_TYPES))


@dataclass(frozen=True)
class Org(_Part):
    """
    The organisation on a contact card (every field optional).

    :param company: Company name.
    :param department: Department.
    :param title: Job title.
    """

    company: str | None = None
    department: str | None = None
    title: str | None = None

    def _check(self) -> Self:
        return replace(self, **{n: _optional_text(getattr(self, n), n) for n in ("company", "department", "title")})


@dataclass(frozen=True)
class Phone(_Part):
    """
    A phone number on a contact card (kept as written; an integer is turned into a string).

    :param phone: The number as displayed (required).
    :param type: Optional ``CELL``, ``MAIN``, ``IPHONE``, ``HOME`` or ``WORK``.
    :param wa_id: Optional WhatsApp id of the number.
    """

    phone: str | int
    type: str | None = None
    wa_id: str | int | None = None

    def _check(self) -> Self:
        return replace(
            self,
            phone=_number_text(self.phone, "phone"),
            type=_one_of(self.type, "type", _PHONE_TYPES),
            wa_id=None if _is_blank(self.wa_id) else _number_text(self.wa_id, "wa_id"),
        )


@dataclass(frozen=True)
class Url(_Part):
    """
    A web address on a contact card.

    :param url: The address (required).
    :param type: Optional ``HOME`` or ``WORK``.
    """

    url: str
    type: str | None = None

    def _check(self) -> Self:
        return replace(self, url=_text(self.url, "url"), type=_one_of(self.type, "type", _CONTACT_TYPES))


def _birthday(value: object, field: str) -> str | None:
    """Return an optional birthday ``YYYY-MM-DD`` that is a real date."""
    text = _optional_text(value, field)
    if text is not None:
        try:
            valid = bool(_BIRTHDAY.fullmatch(text)) and bool(date.fromisoformat(text))
        except ValueError:
            valid = False
        if not valid:
            _fail(field, "must be a real date YYYY-MM-DD", f"got {_show(text)}")
    return text


@dataclass(frozen=True)
class Contact(_Part):
    """
    A contact card. Lists are sent in the order given; empty lists are left out.

    :param name: A :class:`Name` (or dict) with at least ``formatted_name``.
    :param birthday: Optional birthday ``YYYY-MM-DD`` (a real date).
    :param addresses: Optional :class:`Address` list (or dicts).
    :param emails: Optional :class:`Email` list (or dicts).
    :param org: Optional :class:`Org` (or dict).
    :param phones: Optional :class:`Phone` list (or dicts).
    :param urls: Optional :class:`Url` list (or dicts).
    """

    name: Name | Mapping[str, Any]
    birthday: str | None = None
    addresses: Sequence[Address | Mapping[str, Any]] | None = None
    emails: Sequence[Email | Mapping[str, Any]] | None = None
    org: Org | Mapping[str, Any] | None = None
    phones: Sequence[Phone | Mapping[str, Any]] | None = None
    urls: Sequence[Url | Mapping[str, Any]] | None = None

    def _check(self) -> Self:
        if self.name is None:
            _fail("name", "required", "it is missing", _EMPTY)
        return replace(
            self,
            name=Name._coerce(self.name, "name"),
            birthday=_birthday(self.birthday, "birthday"),
            addresses=Address._many(self.addresses, "addresses", "address"),
            emails=Email._many(self.emails, "emails", "email"),
            org=None if self.org is None else Org._coerce(self.org, "org"),
            phones=Phone._many(self.phones, "phones", "phone"),
            urls=Url._many(self.urls, "urls", "url"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the card in the API's shape, keys in the order of the vendor's example (alphabetical)."""
        return dict(sorted(_dump(self).items()))


@dataclass(frozen=True, init=False)
class Contacts(Message):
    """
    One or more contact cards.

    :param contacts: At least one :class:`Contact` (or contact-card dict in the API's shape).
    """

    type_name: ClassVar[str] = "contacts"
    contacts: tuple[Contact, ...]

    def __init__(self, contacts: Sequence[Contact | Mapping[str, Any]]) -> None:
        _set(self, contacts=Contact._many(contacts, "contacts", "contact card", 1))

    def to_payload(self) -> dict[str, Any]:
        """``{"type": "contacts", "contacts": [...]}``."""
        return {"type": "contacts", "contacts": [contact.to_dict() for contact in self.contacts]}
