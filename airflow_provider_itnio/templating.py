"""
Jinja helpers shared by the operators, the notifier and the batch engine (no Airflow import).

* :func:`has_template` / :func:`is_static` - whether a value is known when a DAG file is parsed.
* :func:`map_strings` - the one walker over nested dicts and lists.
* :func:`protect_row_expressions` / :func:`unprotect_row_expressions` - keep ``{{ row.* }}`` (and
  ``{{ recipient }}``) out of Airflow's rendering, for the batch's per-row rendering.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

#: What starts a Jinja expression, statement or comment.
TEMPLATE_MARKERS = ("{{", "{%", "{#")
#: A ``{{ ... }}`` expression that uses the name ``row`` or ``recipient`` (not ``x.row`` nor ``'row'``).
_ROW_EXPRESSION = re.compile(r"\{\{(?:(?!\}\}).)*?(?<![\w.'\"])(?:row|recipient)\b(?:(?!\}\}).)*?\}\}", re.DOTALL)
_RAW_OPEN, _RAW_CLOSE = "{% raw %}", "{% endraw %}"
_PROTECTED = re.compile(re.escape(_RAW_OPEN) + r"(\{\{.*?\}\})" + re.escape(_RAW_CLOSE), re.DOTALL)


def has_template(text: str) -> bool:
    """
    Return True when ``text`` holds Jinja markup (an expression, a statement or a comment).

    :param text: The string to look at.
    """
    return any(marker in text for marker in TEMPLATE_MARKERS)


def map_strings(value: Any, function: Callable[[Any], Any]) -> Any:
    """
    Return ``value`` with ``function`` applied to every leaf of its nested dicts, lists and tuples.

    Dicts come back as dicts (keys unchanged), lists and tuples as lists; a leaf is anything else (a string, a
    number, a compiled template...).

    :param value: A leaf, or a dict/list/tuple of them.
    :param function: Called with each leaf; its result replaces the leaf.
    """
    if isinstance(value, Mapping):
        return {key: map_strings(item, function) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [map_strings(item, function) for item in value]
    return function(value)


def is_static(value: Any) -> bool:
    """
    Return True when ``value`` is plain data with no Jinja template and no XComArg (known at parse time).

    :param value: An operator's or notifier's argument.
    """
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, str):
        return not has_template(value)
    if isinstance(value, Mapping):
        return all(is_static(key) and is_static(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return all(is_static(item) for item in value)
    from airflow_provider_itnio.messages import Message

    # a model is plain data; XComArg, MappedArgument and other objects are resolved at run time
    return isinstance(value, Message)


def _protect(value: Any) -> Any:
    if not isinstance(value, str) or _RAW_OPEN in value or "{{" not in value:
        return value
    return _ROW_EXPRESSION.sub(lambda found: _RAW_OPEN + found.group(0) + _RAW_CLOSE, value)


def _unprotect(value: Any) -> Any:
    if not isinstance(value, str) or _RAW_OPEN not in value:
        return value
    return _PROTECTED.sub(r"\1", value)


def protect_row_expressions(value: Any) -> Any:
    """
    Wrap every ``{{ ... row ... }}`` (or ``recipient``) expression in ``{% raw %}``: Airflow's rendering keeps it.

    Applied by the batch operator to ``message`` when the task is defined; Airflow's rendering then removes the
    ``raw`` tags (and renders everything else: ``{{ params.x }}``, ``{{ ds }}``...), leaving ``{{ row.x }}`` for
    the per-row rendering. Strings that already use ``{% raw %}`` are left alone.

    :param value: A string, or a dict/list of them (other values are returned unchanged).
    """
    return map_strings(value, _protect)


def unprotect_row_expressions(value: Any) -> Any:
    """
    Undo :func:`protect_row_expressions` where Airflow did not render the value.

    That happens when ``execute()`` is called directly (a unit test); on a rendered value this is a no-op.

    :param value: A string, or a dict/list of them.
    """
    return map_strings(value, _unprotect)
