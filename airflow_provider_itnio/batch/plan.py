"""
The message of a batch: its ``{{ row.<field> }}`` templates compiled once, rendered and validated per row.

Strings are compiled in Jinja's *immutable sandboxed* environment, so a row or a template cannot call into Python
internals or mutate data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

from airflow_provider_itnio import messages as m
from airflow_provider_itnio.errors import ItnioError, ItnioValidationError
from airflow_provider_itnio.templating import has_template, map_strings, unprotect_row_expressions


class RowTemplateError(ItnioError):
    """
    A ``{{ row.* }}`` template failed for one row: a missing field, a Jinja error, or a ``SecurityError``
    (the template tried to reach Python internals, which the sandboxed environment forbids).

    :param error: The exception Jinja raised.
    """

    permanent = True

    def __init__(self, error: Exception) -> None:
        self.error = error
        super().__init__(f"{type(error).__name__}: {error}")

    def payload(self) -> dict[str, Any]:
        """Return ``{"status": "template", "reason": "<ExceptionName>: <message>"}``."""
        return {"status": "template", "reason": str(self)}


def _template_env() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class MessagePlan:
    """
    A message in the API's dict form whose strings may hold ``{{ row.<field> }}`` templates.

    Every template string is compiled once, in Jinja's immutable sandboxed environment (a row or a template
    cannot call into Python internals or mutate data); :meth:`build` renders it for one row and validates
    the result with :func:`~airflow_provider_itnio.messages.message_from_dict`. A message without templates
    is validated once, here.

    :param message: The message dict, e.g. ``{"type": "text", "text": {"body": "Hi {{ row.name }}"}}``.
    :param factory: Builds (and validates) the model from the rendered dict (default
        :func:`~airflow_provider_itnio.messages.message_from_dict`; the fallback template's checks it is a template).
    :raises ItnioValidationError: When the message has no templates and is invalid.
    :raises RowTemplateError: When a template string does not compile.
    """

    def __init__(
        self, message: Mapping[str, Any], factory: Callable[[Mapping[str, Any]], m.Message] | None = None
    ) -> None:
        if not isinstance(message, Mapping):
            raise ItnioValidationError(
                "message", "must be a messages model or the API's dict form", f"got {type(message).__name__}"
            )
        self._factory = factory or m.message_from_dict
        self._env = _template_env()
        self._templates = 0
        try:
            self._tree = map_strings(unprotect_row_expressions(message), self._compile)
        except Exception as err:  # a TemplateSyntaxError
            raise RowTemplateError(err) from err
        self.static: m.Message | None = None
        if self._templates == 0:
            self.static = self._factory(self._tree)

    def _compile(self, value: Any) -> Any:
        if isinstance(value, str) and has_template(value):
            self._templates += 1
            return self._env.from_string(value)
        return value

    def render(self, row: Any, recipient: str) -> dict[str, Any]:
        """
        Return the message dict for one row (strings rendered; nothing validated).

        :param row: The row: a dict, a list/tuple, or ``{recipient_field: value}`` for a bare recipient.
        :param recipient: The row's normalised recipient (available as ``{{ recipient }}``).
        :raises RowTemplateError: When rendering fails for this row.
        """
        try:
            variables = {"row": row, "recipient": recipient}
            return map_strings(self._tree, lambda leaf: leaf.render(variables) if isinstance(leaf, Template) else leaf)
        except Exception as err:  # SecurityError, UndefinedError, errors of filters...
            raise RowTemplateError(err) from err

    def build(self, row: Any, recipient: str) -> m.Message:
        """
        Return the validated message model for one row.

        :param row: The row, as for :meth:`render`.
        :param recipient: The row's normalised recipient.
        :raises RowTemplateError: When rendering fails.
        :raises ItnioValidationError: When the rendered message breaks a rule of the API.
        """
        if self.static is not None:
            return self.static
        return self._factory(self.render(row, recipient))
