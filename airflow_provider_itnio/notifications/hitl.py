"""
``ItnioHITLNotifier``: ask for a Human-in-the-loop answer on WhatsApp, answered with a tap (Airflow 3.1+).

Give it to any HITL operator (``ApprovalOperator``, ``HITLOperator``, ``HITLBranchOperator``,
``HITLEntryOperator``) as ``notifiers=[...]``:

.. code-block:: python

    ApprovalOperator(
        task_id="approve_refund",
        subject="Refund {{ params.order }}?",
        body="Customer {{ params.customer }} asks for {{ params.amount }}.",
        notifiers=[ItnioHITLNotifier(recipients=["+44 7700 900123"])],
        response_timeout=timedelta(hours=4),
    )

Each recipient gets the rendered subject (bold) and body, cut with an ellipsis to WhatsApp's limits, and:

- 1-3 options (one to choose, no ``params``): reply buttons; 4-10: an interactive list;
- more than 10 options, ``multiple=True``, or ``params`` (typed input): the text only, saying that the answer
  must be given in the Airflow UI;
- a link to the task's page in the UI (``required_actions``) when ``[api] base_url`` is set (or ``base_url=``).

A tap is an answer: the webhook receiver on the API server records it as the UI would
(:mod:`airflow_provider_itnio.webhook.taps`, which says who may answer and what is refused;
:mod:`airflow_provider_itnio.hitl_buttons` says how button ids are signed). Taps need the webhook receiver: the
connection needs a ``webhook_token`` extra and the vendor must push to the receiver; without the token, the
notifier sends the text and the UI link only. The buttons are signed with the connection's ``button_key`` extra,
or without one with a key derived from its API secret (never from the token: rotating it leaves the buttons
already sent working).

What was sent is in the task's XCom :data:`REQUESTS_XCOM_KEY` (``itnio_hitl_requests``), keyed by the masked
number (``+15*****0200``: its first two and last four digits, never the whole number):
``{"+15*****0200": {"message_id": ..., "kind": "buttons" | "list" | "ui_only" | "template", "recipient": [...]}}``
(``recipient``: keyed digests of the number, with which the receiver tells whether a tap comes from a number the
request was sent to), and ``{"+15*****0200": {"error": ...}}`` for a recipient whose send failed.

Outside the customer's 24-hour window a session message is not delivered. With ``fallback_template=`` the
notifier asks the receiver for each recipient's window
(:meth:`~airflow_provider_itnio.hooks.receiver.ItnioReceiverClient.window`) and, when it is closed or cannot be
read, sends that approved template instead, with the subject as its one body parameter, so the approver opens
the conversation; the buttons follow as soon as the approver writes back (the notifier records who is owed them
in the task's XCom ``itnio_hitl_pending``, as keyed digests of the numbers; the receiver sends them once, while
the task waits).

``assigned_users``: give ``user_ids={"+44 7700 900123": "alice"}`` to map numbers to Airflow user ids. The id is
carried, signed, in the button ids; when the task has ``assigned_users``, a number whose user id is not one of
theirs gets the text and the UI link only, and its taps are refused.

The notifier never raises: what goes wrong is logged and the task goes on waiting for an answer in the UI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio import messages as m
from airflow_provider_itnio._text import ELLIPSIS, cut
from airflow_provider_itnio.connection_fields import WEBHOOK_TOKEN_EXTRA
from airflow_provider_itnio.errors import ItnioError
from airflow_provider_itnio.hitl_buttons import (
    BUTTONS,
    LIST,
    PENDING_XCOM_KEY,
    REQUESTS_XCOM_KEY,
    UI_ONLY,
    ButtonKeys,
    button_keys,
    mask_phone,
    offer,
    recipient_digest,
    request_message,
    request_text,
    sign_button,
)
from airflow_provider_itnio.notifications._base import ItnioBaseNotifier
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("ItnioHITLNotifier (Human-in-the-loop answers on WhatsApp)")

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = [
    "BUTTONS",
    "ELLIPSIS",
    "LIST",
    "REQUESTS_XCOM_KEY",
    "UI_ONLY",
    "ItnioHITLNotifier",
    "cut",
    "sign_button",  # where it was imported from before hitl_buttons
]


def _mask_numbers(text: str) -> str:
    """Return ``text`` with every run of six or more digits (spaces, dashes, dots, brackets between) masked."""
    return re.sub(
        r"\+?\d[\d \-.()]{4,}\d",
        lambda found: (
            mask_phone(re.sub(r"\D", "", found.group()))
            if len(re.sub(r"\D", "", found.group())) >= 6
            else found.group()
        ),
        text,
    )


class ItnioHITLNotifier(ItnioBaseNotifier):
    """
    Send a Human-in-the-loop request to WhatsApp numbers, with its options as buttons to tap (see the module).

    :param recipients: The approvers' numbers: a number, a list, or a string of numbers separated by commas
        (templated).
    :param itnio_conn_id: The ``itnio`` connection; its ``button_key`` (or API secret) signs the buttons
        (templated).
    :param business_phone: The sender number; defaults to the connection's ``business_phone`` extra (templated).
    :param fallback_template: An approved template sent instead when a recipient's 24-hour window is closed, with
        the subject as its one body parameter (templated).
    :param fallback_language: The template's language code.
    :param user_ids: ``{number: Airflow user id}``: who each number is, for ``assigned_users`` and the UI.
    :param base_url: The Airflow UI's address for the link; ``[api] base_url`` by default.
    :param list_button: The label of the button that opens the list of options (4-10 options).
    :param context: Set by Airflow when it builds a notifier for a callback; not for DAG authors.
    """

    template_fields: Sequence[str] = ("recipients", "itnio_conn_id", "business_phone", "fallback_template")
    not_sent_message = "itniotech HITL request not sent: %s"

    def __init__(
        self,
        *,
        recipients: str | int | Sequence[str | int],
        itnio_conn_id: str = "itnio_default",
        business_phone: str | int | None = None,
        fallback_template: str | None = None,
        fallback_language: str = "en_US",
        user_ids: Mapping[str | int, str] | None = None,
        base_url: str | None = None,
        list_button: str = "Choose",
        context: Context | None = None,
    ) -> None:
        super().__init__(context=context)
        self.recipients = recipients
        self.itnio_conn_id = itnio_conn_id
        self.business_phone = business_phone
        self.fallback_template = fallback_template
        self.fallback_language = fallback_language
        self.user_ids = {m.normalize_phone(k, "user_ids"): str(v) for k, v in (user_ids or {}).items()}
        self.base_url = base_url
        self.list_button = cut(list_button, m.MAX_LIST_BUTTON)
        #: ``{recipient digits: messageId}`` of the last request sent.
        self.sent: dict[str, str] = {}
        #: ``{recipient digits: "buttons" | "list" | "ui_only" | "template"}``: what each recipient got.
        self.kinds: dict[str, str] = {}
        #: ``{recipient: error text}`` of the last request's failures.
        self.failed: dict[str, str] = {}
        self.keep_templates()

    # -- building -----------------------------------------------------------------------------------------

    def mode(self, task: Any) -> str:
        """
        Return how the task's options are offered: :data:`BUTTONS`, :data:`LIST` or :data:`UI_ONLY`.

        :param task: The HITL operator.
        """
        return offer(task)

    @staticmethod
    def link(task: Any, ti: Any, base_url: str | None = None) -> str | None:
        """
        Return the task's ``required_actions`` page in the UI, or ``None`` when no base URL is known.

        :param task: The HITL operator.
        :param ti: The task instance.
        :param base_url: The UI's address (``[api] base_url`` by default).
        """
        try:
            return str(task.generate_link_to_ui(task_instance=ti, base_url=base_url))
        except (ValueError, AttributeError):
            return None

    def build_text(self, task: Any, link: str | None, limit: int, ui_only: bool) -> str:
        """
        Return the message's text: the subject in bold, the body, and the link, within ``limit`` characters.

        :param task: The (rendered) HITL operator.
        :param link: The UI link, or ``None``.
        :param limit: The most characters (1024 with buttons or a list, 4096 for a text).
        :param ui_only: Whether the answer must be given in the UI.
        """
        return request_text(task, link, limit, ui_only=ui_only)

    def build_message(self, task: Any, ti: Any, recipient: str, key: bytes | None, link: str | None) -> m.Message:
        """
        Return the request for one recipient: buttons, a list, or a text saying to answer in the UI.

        :param task: The (rendered) HITL operator.
        :param ti: The task instance (its ``id`` goes, signed, into the button ids).
        :param recipient: The recipient's digits.
        :param key: The signing key (:func:`~airflow_provider_itnio.hitl_buttons.button_keys`), or ``None``.
        :param link: The UI link, or ``None``.
        """
        return request_message(
            task, ti.id, recipient, key, link, user_id=self.user_ids.get(recipient), list_button=self.list_button
        )

    def _keys(self, hook: Any) -> ButtonKeys | None:
        """Return the connection's key ring, or ``None`` when no buttons can be answered (no ``webhook_token``)."""
        conn = hook.get_connection(self.itnio_conn_id)
        extra = conn.extra_dejson or {}
        token = extra.get(WEBHOOK_TOKEN_EXTRA)
        if not isinstance(token, str) or not token.strip():
            self.log.warning(
                "itnio connection %s has no webhook_token extra: the HITL request is sent without buttons "
                "(taps need the webhook receiver); answer in the Airflow UI",
                self.itnio_conn_id,
            )
            return None
        keys = button_keys(extra, conn.password)
        if keys.signing is None:
            self.log.warning(
                "itnio connection %s has neither a button_key extra nor an API secret to sign buttons with: the "
                "HITL request is sent without buttons; answer in the Airflow UI",
                self.itnio_conn_id,
            )
        return keys

    def _window_closed(self, business_phone: str | None, recipients: list[str]) -> set[str]:
        """Return the recipients to send the fallback template to (window closed, or unknown)."""
        if not self.fallback_template:
            return set()
        from airflow_provider_itnio.hooks.receiver import ItnioReceiverClient

        if not business_phone:
            self.log.warning("itnio HITL: no business_phone to read windows with; sending the fallback template")
            return set(recipients)
        client = ItnioReceiverClient(self.itnio_conn_id)
        closed: set[str] = set()
        for recipient in recipients:
            try:
                if not client.window(business_phone, recipient).get("open"):
                    closed.add(recipient)
            except Exception as err:  # unknown: the template reaches the approver whatever the window
                self.log.warning("itnio HITL: the window cannot be read (%s); sending the fallback template", err)
                closed.add(recipient)
        return closed

    # -- sending ------------------------------------------------------------------------------------------

    def notify(self, context: Context) -> None:
        """
        Send the request to every recipient; log, never raise, what goes wrong.

        :param context: The HITL task's context (its ``task`` is rendered; ``task_instance.id`` names the try).
        """
        from airflow_provider_itnio.hooks.itnio import ItnioHook

        self.sent, self.kinds, self.failed = {}, {}, {}
        task: Any = context["task"]
        ti: Any = context["task_instance"]
        if not hasattr(task, "options") or not hasattr(task, "subject"):
            self.log.error("ItnioHITLNotifier works with Human-in-the-loop operators only; %s is not one", task)
            return
        try:
            recipients = self._recipient_list()
        except (ItnioError, ValueError) as err:
            self.log.error("itniotech HITL request not sent: %s", err)
            self.failed = {str(self.recipients): str(err)}
            return
        link = self.link(task, ti, self.base_url)
        hook = ItnioHook(itnio_conn_id=self.itnio_conn_id)
        try:
            keys = self._keys(hook)
            key = keys.signing if keys is not None else None
            business_phone = str(self.business_phone or "") or hook.config.business_phone
            closed = self._window_closed(business_phone, recipients)
            for recipient in recipients:
                try:
                    message: m.Message
                    if recipient in closed:
                        subject = cut(" ".join(str(task.subject).split()), 200)
                        message = m.Template.with_body_parameters(
                            str(self.fallback_template), self.fallback_language, [subject]
                        )
                        kind = "template"
                    else:
                        message = self.build_message(task, ti, recipient, key, link)
                        kind = (
                            BUTTONS
                            if isinstance(message, m.ReplyButtons)
                            else LIST
                            if isinstance(message, m.ListMessage)
                            else UI_ONLY
                        )
                    result = hook.send(recipient, message, business_phone=self.business_phone or None)
                except Exception as err:  # one recipient's failure does not stop the others
                    self.log.error("itniotech HITL request to %s not sent: %s", recipient, err)
                    self.failed[recipient] = f"{type(err).__name__}: {err}"
                else:
                    self.sent[recipient] = result.message_id
                    self.kinds[recipient] = kind
                    self.log.info("itniotech HITL request (%s) sent: messageId %s", kind, result.message_id)
            self._record_requests(ti, keys)
            if key is not None:
                self._record_pending(ti, key, link)
        except Exception as err:
            self.log.exception("itniotech HITL request not sent: %s", err)
        finally:
            hook.close()

    def _record_requests(self, ti: Any, keys: ButtonKeys | None) -> None:
        """
        Record in XCom what each recipient was sent (its messageId and kind), or why not, under masked numbers.

        Each recipient sent to also gets its keyed digests (one per key of the ring: the receiver recognises the
        number even when the key that signed the buttons was dropped since).
        """
        value: dict[str, dict[str, Any]] = {}

        def put(recipient: str, entry: dict[str, Any]) -> None:
            digits = re.sub(r"\D", "", recipient)
            name = mask_phone(digits) if len(digits) >= 6 else "(invalid recipient)"
            unique, n = name, 1
            while unique in value:  # two numbers with the same ends
                n += 1
                unique = f"{name} ({n})"
            value[unique] = entry

        for recipient, message_id in self.sent.items():
            entry: dict[str, Any] = {"message_id": message_id, "kind": self.kinds[recipient]}
            if keys is not None and keys.verifying:
                entry["recipient"] = [recipient_digest(key, recipient) for key in keys.verifying]
            put(recipient, entry)
        for recipient, error in self.failed.items():
            put(recipient, {"error": _mask_numbers(error)})
        try:
            ti.xcom_push(key=REQUESTS_XCOM_KEY, value=value)
        except Exception as err:  # the messageIds are in the log too
            self.log.warning("itnio HITL: cannot record the messageIds in XCom (%s)", err)

    def _record_pending(self, ti: Any, key: bytes, link: str | None) -> None:
        """Record in XCom who got the template and is owed the buttons (keyed digests of their numbers)."""
        owed = [recipient for recipient, kind in self.kinds.items() if kind == "template"]
        if not owed:
            return
        value = {
            "conn_id": self.itnio_conn_id,
            "recipients": {recipient_digest(key, r): self.user_ids.get(r) for r in owed},
            "link": link,
            "list_button": self.list_button,
        }
        try:
            ti.xcom_push(key=PENDING_XCOM_KEY, value=value)
        except Exception as err:  # the approvers can still answer in the UI
            self.log.warning("itnio HITL: cannot record who is owed the buttons (%s); they answer in the UI", err)
