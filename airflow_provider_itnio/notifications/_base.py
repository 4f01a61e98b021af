"""
What the provider's notifiers share: render the templates afresh on every call, read the recipients, never raise.

:class:`~airflow_provider_itnio.notifications.itnio.ItnioNotifier` and
:class:`~airflow_provider_itnio.notifications.hitl.ItnioHITLNotifier` derive from :class:`ItnioBaseNotifier`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseNotifier

from airflow_provider_itnio import messages as m

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.common.compat.sdk import Context

__all__ = ["ItnioBaseNotifier"]

#: A string of recipients may list several numbers separated by commas or semicolons.
_RECIPIENT_SEPARATORS = re.compile(r"[,;]")


class ItnioBaseNotifier(BaseNotifier):
    """
    A notifier that renders its template fields from the unrendered templates on every call, and never raises.

    Airflow's ``BaseNotifier`` renders the template fields in place; a subclass calls :meth:`keep_templates` at the
    end of its ``__init__`` so that one instance (e.g. in ``default_args``, shared by many tasks) renders afresh for
    every callback.

    :param context: Set by Airflow (3.1+) when it builds a notifier for a callback; not for DAG authors.
    """

    #: The log line of an error that stopped a call (``%s``: the error).
    not_sent_message: ClassVar[str] = "itniotech notification not sent: %s"

    recipients: str | int | Sequence[str | int]

    def __init__(self, *, context: Context | None = None) -> None:
        if context is not None:  # Airflow >= 3.1 passes the context when it builds a notifier for a callback
            super().__init__(context=context)
        else:
            super().__init__()
        self._unrendered: dict[str, Any] = {}

    def keep_templates(self) -> None:
        """Keep the template fields' values as they are now: every render starts again from them."""
        self._unrendered = {name: copy.deepcopy(getattr(self, name)) for name in self.template_fields}

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """
        Render the template fields with ``context``, starting again from the unrendered templates.

        :param context: The callback's (or task's) context.
        :param jinja_env: The Jinja environment to render with (the DAG's by default).
        """
        for name, value in self._unrendered.items():
            setattr(self, name, copy.deepcopy(value))
        super().render_template_fields(context, jinja_env)

    def __call__(self, *args: Any) -> None:
        """
        Render the template fields and send, as Airflow calls a notifier. Never raises.

        :param args: The callback's context (or, for Airflow 2's ``sla_miss_callback``, its five arguments).
        """
        try:
            super().__call__(*args)
        except Exception as err:  # e.g. a template that cannot be rendered: log it, never mask the task's outcome
            self.log.exception(self.not_sent_message, err)

    def _recipient_list(self) -> list[str]:
        """Return the recipients' normalised digits, in order, without duplicates (raises ItnioValidationError)."""
        raw = self.recipients
        items: list[Any] = list(raw) if isinstance(raw, list | tuple) else [raw]
        numbers: list[str] = []
        for item in items:
            parts = _RECIPIENT_SEPARATORS.split(item) if isinstance(item, str) else [item]
            for part in parts:
                if isinstance(part, str) and not part.strip():
                    continue
                digits = m.normalize_phone(part.strip() if isinstance(part, str) else part, "recipient")
                if digits not in numbers:
                    numbers.append(digits)
        if not numbers:
            raise ValueError(f"ItnioNotifier: no recipient in {raw!r}.")
        return numbers
