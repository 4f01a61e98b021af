"""The sandbox's mutable state: accepted messages, request log, balance, latency, phones and pending faults.

Every mutation happens under one lock, held only for the mutation itself (never while sleeping or doing I/O).
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.sandbox.validation import CONNECTED

if TYPE_CHECKING:
    from collections.abc import Iterable


def display_phone_number(phone: str) -> str:
    """
    Return a human-readable form of a business phone, e.g. ``15550001111`` -> ``+1 555-000-1111``.

    :param phone: The phone's digits.
    """
    if len(phone) == 11 and phone.startswith("1"):
        return f"+1 {phone[1:4]}-{phone[4:7]}-{phone[7:]}"
    return f"+{phone}"


@dataclass
class PhoneInfo:
    """
    One business phone of the sandbox account, as ``queryBusinessPhoneInfo`` reports it.

    :param phone_number: The digits.
    :param status: 0 PENDING, 1 DELETED, 2 MIGRATED, 3 BANNED, ..., 7 CONNECTED, ... (only 7 can send).
    """

    phone_number: str
    status: int = CONNECTED
    display_phone_number: str = ""
    verification_status: str = "VERIFIED"
    messaging_limit_tier: str = "TIER_1K"
    quality_rating: str = "GREEN"

    def __post_init__(self) -> None:
        if not self.display_phone_number:
            self.display_phone_number = display_phone_number(self.phone_number)

    def to_json(self) -> dict[str, Any]:
        """Return the vendor's ``dataList`` entry for this phone."""
        return {
            "phoneNumber": self.phone_number,
            "displayPhoneNumber": self.display_phone_number,
            "status": self.status,
            "verificationStatus": self.verification_status,
            "messagingLimitTier": self.messaging_limit_tier,
            "qualityRating": self.quality_rating,
        }


@dataclass
class Fault:
    """
    A fault applied to the next ``remaining`` requests on the ``/wa/`` endpoints.

    :param remaining: How many more requests it applies to.
    :param http_status: Answer with this HTTP status and ``{"error": ...}`` instead of the API response.
    :param api_status: Answer HTTP 200 with this API status (and ``reason``) instead of the real outcome.
    :param reason: The reason text for ``api_status`` / the error text for ``http_status``.
    :param drop: Read the request, then close the connection without answering.
    :param slow: Sleep this many seconds before answering (the request is otherwise processed normally).
    """

    remaining: int
    http_status: int | None = None
    api_status: str | None = None
    reason: str | None = None
    drop: bool = False
    slow: float | None = None

    def describe(self) -> str:
        """Return a short name of the fault, for the request log."""
        parts = []
        if self.http_status is not None:
            parts.append(f"http_status={self.http_status}")
        if self.api_status is not None:
            parts.append(f"api_status={self.api_status}")
        if self.drop:
            parts.append("drop")
        if self.slow is not None:
            parts.append(f"slow={self.slow:g}")
        return ",".join(parts)

    def to_json(self) -> dict[str, Any]:
        """JSON form, as accepted by ``POST /sandbox/faults``."""
        return {
            "n": self.remaining,
            "http_status": self.http_status,
            "api_status": self.api_status,
            "reason": self.reason,
            "drop": self.drop,
            "slow": self.slow,
        }


@dataclass
class SandboxState:
    """
    Everything the sandbox remembers. All methods are thread-safe.

    :param phones: The account's business phones.
    :param balance: Messages left (None = unlimited); each accepted message costs 1.
    :param latency: Seconds added to every ``/wa/`` response.
    """

    phones: dict[str, PhoneInfo]
    balance: int | None = None
    latency: float = 0.0
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(cls, phones: Iterable[str], balance: int | None, latency: float) -> SandboxState:
        """
        Create a fresh state.

        :param phones: The business phones' digits (all CONNECTED).
        :param balance: Messages left, None = unlimited.
        :param latency: Seconds added to every ``/wa/`` response.
        """
        return cls(phones={p: PhoneInfo(p) for p in phones}, balance=balance, latency=latency)

    # -- reads ---------------------------------------------------------------------------------------

    def phone_statuses(self) -> dict[str, int]:
        """Return a snapshot ``{phone: status}``."""
        with self.lock:
            return {p: info.status for p, info in self.phones.items()}

    def phone_records(self, numbers: list[str] | None) -> list[dict[str, Any]]:
        """
        ``dataList`` entries for ``numbers`` (all phones when None), in the account's order.

        :param numbers: The requested phone numbers, or None for all.
        """
        with self.lock:
            return [info.to_json() for p, info in self.phones.items() if numbers is None or p in numbers]

    def snapshot_messages(self) -> list[dict[str, Any]]:
        """Return a deep copy of the accepted messages, in order."""
        with self.lock:
            return copy.deepcopy(self.messages)

    def find_message(self, message_id: str) -> dict[str, Any] | None:
        """
        Return a deep copy of the accepted message with this id, or None.

        :param message_id: The ``messageId`` the API answered with.
        """
        with self.lock:
            for message in reversed(self.messages):
                if message["messageId"] == message_id:
                    return copy.deepcopy(message)
            return None

    def snapshot_requests(self) -> list[dict[str, Any]]:
        """Return a deep copy of the request log, in order."""
        with self.lock:
            return copy.deepcopy(self.requests)

    def config(self) -> dict[str, Any]:
        """Return the current settings, as ``GET /sandbox/config`` returns them."""
        with self.lock:
            return {
                "balance": self.balance,
                "latency": self.latency,
                "phones": {p: info.status for p, info in self.phones.items()},
                "faults": [f.to_json() for f in self.faults],
            }

    # -- writes --------------------------------------------------------------------------------------

    def take_fault(self) -> Fault | None:
        """Return the fault that applies to the request being handled now (consuming one use of it), if any."""
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.popleft()
            return fault

    def add_fault(self, fault: Fault) -> None:
        """
        Queue a fault after the ones already pending.

        :param fault: The fault to queue.
        """
        if fault.remaining > 0:
            with self.lock:
                self.faults.append(fault)

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self.lock:
            self.faults.clear()

    def charge_and_record(self, message: dict[str, Any]) -> bool:
        """
        Take one unit of balance and record ``message`` as accepted, atomically.

        :param message: The message record.
        :return: False (nothing recorded) when the balance is used up.
        """
        with self.lock:
            if self.balance is not None:
                if self.balance <= 0:
                    return False
                self.balance -= 1
            self.messages.append(message)
            return True

    def log_request(self, entry: dict[str, Any]) -> None:
        """
        Append to the request log.

        :param entry: ``{"path", "status", "body", ...}``.
        """
        with self.lock:
            self.requests.append(entry)

    def clear(self) -> None:
        """Forget the accepted messages and the request log."""
        with self.lock:
            self.messages.clear()
            self.requests.clear()

    def reset(self, phones: Iterable[str], balance: int | None, latency: float) -> None:
        """
        Back to start settings: forget messages, requests and faults.

        :param phones: The business phones' digits (all CONNECTED).
        :param balance: Messages left, None = unlimited.
        :param latency: Seconds added to every ``/wa/`` response.
        """
        with self.lock:
            self.messages.clear()
            self.requests.clear()
            self.faults.clear()
            self.phones = {p: PhoneInfo(p) for p in phones}
            self.balance = balance
            self.latency = latency

    def set_balance(self, balance: int | None) -> None:
        """
        Set the remaining balance.

        :param balance: Messages left, None = unlimited.
        """
        with self.lock:
            self.balance = balance

    def set_latency(self, seconds: float) -> None:
        """
        Set the latency added to every ``/wa/`` response.

        :param seconds: The delay, >= 0.
        """
        with self.lock:
            self.latency = seconds

    def set_phone_status(self, phone: str, status: int) -> None:
        """
        Set a business phone's status, adding the phone when it is new.

        :param phone: The phone's digits.
        :param status: The vendor's status number (7 = CONNECTED).
        """
        with self.lock:
            info = self.phones.get(phone)
            if info is None:
                self.phones[phone] = PhoneInfo(phone, status=status)
            else:
                info.status = status

    def get_latency(self) -> float:
        """Return the current latency."""
        with self.lock:
            return self.latency
