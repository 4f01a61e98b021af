"""
The session messages whose object holds plain fields: text, media (image, document, audio, video, sticker) and
location (the vendor's table "Per type", ``POST /wa/custom/sendMsg``).

No Airflow import here. Session messages reach a customer only within the 24-hour window. Media are fetched by
the API from a public http(s) URL; a location's coordinates may be numbers or decimal strings and are sent as
strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from airflow_provider_itnio.messages.base import Message, _set
from airflow_provider_itnio.messages.checks import (
    MAX_CAPTION,
    MAX_TEXT_BODY,
    _coordinate,
    _link,
    _optional_text,
    _text,
)


@dataclass(frozen=True)
class Text(Message):
    """
    A text message.

    :param body: The text, at most 4096 characters (WhatsApp formatting such as ``*bold*`` is allowed).
    """

    type_name: ClassVar[str] = "text"
    body: str

    def __post_init__(self) -> None:
        _text(self.body, "text.body", MAX_TEXT_BODY, empty="-115")


def _media(message: Message, link_empty: str) -> None:
    """Check what media messages share: the link, and the caption where the type has one."""
    name = message.type_name
    _link(getattr(message, "link", None), f"{name}.link", link_empty)
    if hasattr(message, "caption"):
        _set(message, caption=_optional_text(message.caption, f"{name}.caption", MAX_CAPTION))


@dataclass(frozen=True)
class Image(Message):
    """
    An image (JPEG or PNG, at most 5 MB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the image.
    :param caption: Optional caption, at most 1024 characters.
    """

    type_name: ClassVar[str] = "image"
    link: str
    caption: str | None = None

    def __post_init__(self) -> None:
        _media(self, "-117")


@dataclass(frozen=True)
class Document(Message):
    """
    A document (at most 100 MB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the document.
    :param filename: File name shown to the recipient (required).
    :param caption: Optional caption, at most 1024 characters.
    """

    type_name: ClassVar[str] = "document"
    link: str
    filename: str
    caption: str | None = None

    def __post_init__(self) -> None:
        _media(self, "-125")
        _text(self.filename, "document.filename")


@dataclass(frozen=True)
class Audio(Message):
    """
    An audio file (at most 16 MB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the audio file.
    """

    type_name: ClassVar[str] = "audio"
    link: str

    def __post_init__(self) -> None:
        _media(self, "-119")


@dataclass(frozen=True)
class Video(Message):
    """
    A video (at most 16 MB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the video.
    :param caption: Optional caption, at most 1024 characters.
    """

    type_name: ClassVar[str] = "video"
    link: str
    caption: str | None = None

    def __post_init__(self) -> None:
        _media(self, "-121")


@dataclass(frozen=True)
class Sticker(Message):
    """
    A sticker (webp, at most 100 KB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the sticker.
    """

    type_name: ClassVar[str] = "sticker"
    link: str

    def __post_init__(self) -> None:
        _media(self, "-123")


@dataclass(frozen=True, init=False)
class Location(Message):
    """
    A location pin. Coordinates may be numbers or decimal strings; they are stored and sent as strings.

    :param latitude: Latitude in degrees, -90 to 90.
    :param longitude: Longitude in degrees, -180 to 180.
    :param name: Name of the place (required).
    :param address: Address of the place (required).
    """

    type_name: ClassVar[str] = "location"
    latitude: str
    longitude: str
    name: str
    address: str

    def __init__(self, latitude: float | str, longitude: float | str, name: str, address: str) -> None:
        _set(
            self,
            latitude=_coordinate(latitude, "location.latitude", 90, "-129"),
            longitude=_coordinate(longitude, "location.longitude", 180, "-128"),
            name=_text(name, "location.name"),
            address=_text(address, "location.address"),
        )
