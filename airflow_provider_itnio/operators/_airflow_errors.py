"""
The one place that turns the provider's errors into the exceptions that end an Airflow task.

Every operator (the single-message ones and the batch one) raises what :func:`task_failure` returns, so the
rules below hold everywhere:

* a permanent :class:`~airflow_provider_itnio.errors.ItnioError` (invalid value, missing connection setting,
  permanent API status, a delivery that may have happened) -> ``AirflowFailException``: no retry is spent on
  something a retry cannot fix;
* any other ``ItnioError`` (transport trouble, a temporary API status, a ledger that is busy or down) -> a
  retryable exception;
* ``ItnioDeliveryUnknownError`` is retryable only when the operator opted in (``retry_on_unknown_delivery``);
* in a *resumable* task (the batch, whose retry sends only what was not sent), an account-level API error
  (balance, credentials, business phone) is retryable: top the balance up and let it retry;
* anything that is not an ``ItnioError`` (a bug) is left as it is.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_itnio.errors import ItnioApiError, ItnioDeliveryUnknownError, ItnioError


def retry_can_help(error: ItnioError, *, resumable: bool = False, retry_on_unknown_delivery: bool = False) -> bool:
    """
    Return True when an Airflow retry may succeed where this try failed with ``error``.

    :param error: The provider's error.
    :param resumable: The task resumes where it stopped (the batch): account-level API errors are retryable.
    :param retry_on_unknown_delivery: The operator lets Airflow retry a send that may have been delivered.
    """
    if isinstance(error, ItnioDeliveryUnknownError):
        return retry_on_unknown_delivery
    if resumable and isinstance(error, ItnioApiError) and error.account_level:
        return True
    return not error.permanent


def task_failure(
    error: BaseException | None,
    *,
    message: str | None = None,
    retry: bool | None = None,
    resumable: bool = False,
    retry_on_unknown_delivery: bool = False,
) -> BaseException:
    """
    Return the exception to raise for ``error``: ``AirflowFailException`` when no retry can help.

    A retryable ``error`` is returned as it is when no ``message`` is given (Airflow retries any exception),
    otherwise wrapped in an ``AirflowException`` carrying ``message``; the original is its ``__cause__``.

    :param error: What ended the work (None: ``retry`` and ``message`` say it all).
    :param message: The text of the task's failure (default: the error's own text).
    :param retry: Decide retryability here instead of from ``error`` (the batch: "some row may pass on a retry").
    :param resumable: See :func:`retry_can_help`.
    :param retry_on_unknown_delivery: See :func:`retry_can_help`.
    """
    if retry is None:
        if not isinstance(error, ItnioError):
            if error is None:
                raise ValueError("task_failure needs an error or an explicit retry")
            return error
        retry = retry_can_help(error, resumable=resumable, retry_on_unknown_delivery=retry_on_unknown_delivery)
    if retry and message is None and error is not None:
        return error
    failure: BaseException = (AirflowException if retry else AirflowFailException)(message or str(error))
    failure.__cause__ = error
    return failure
