"""
The sweep of each API server process: taps left pending are applied, sends of owed buttons left half-way reported.

A tap left pending by an API server killed between recording its push and applying it is applied by the vendor's
re-push, or by the sweep (:func:`sweep_taps`), which a thread of each API server process (:data:`sweeper`, started
with the receiver and by its first request) runs every :data:`SWEEP_INTERVAL` seconds, for taps pending longer than
:data:`SWEEP_AFTER`. A tap the sweep cannot apply is tried again later (waiting twice as long each time) and given
up, with an error logged, after :data:`MAX_TAP_ATTEMPTS` attempts. The same sweep reports the owed buttons whose send
was claimed and never settled (:func:`~airflow_provider_itnio.webhook.owed_buttons.sweep_sending`).
"""

from __future__ import annotations

import datetime
import logging
import os
import threading

from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.approvals_common import masked_error, new_session, phone_digest, send_reply
from airflow_provider_itnio.webhook.owed_buttons import sweep_sending
from airflow_provider_itnio.webhook.store import TAP_SWEEP_AFTER
from airflow_provider_itnio.webhook.taps import apply_tap

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("Human-in-the-loop answers on WhatsApp")

__all__ = [
    "MAX_TAP_ATTEMPTS",
    "MAX_TAP_BACKOFF",
    "SWEEP_AFTER",
    "SWEEP_BATCH",
    "SWEEP_INTERVAL",
    "Sweeper",
    "sweep",
    "sweep_taps",
    "sweeper",
]

log = logging.getLogger(__name__)

#: Seconds between two sweeps (:func:`sweep`) in one API server process.
SWEEP_INTERVAL = 10.0
#: How long a tap must have been pending before the sweep takes it (the push's own request handles it before), and
#: the first wait after a failed attempt (then doubling, up to :data:`MAX_TAP_BACKOFF`).
SWEEP_AFTER = TAP_SWEEP_AFTER
#: The longest wait between two attempts at a tap.
MAX_TAP_BACKOFF = datetime.timedelta(minutes=30)
#: The sweep's attempts at a tap before it gives up (about 2 hours with the backoff), logging an error.
MAX_TAP_ATTEMPTS = 10
#: The most pending taps one sweep tries.
SWEEP_BATCH = 20


def _backoff(attempt: int) -> datetime.timedelta:
    """Return the wait after the ``attempt``-th failed attempt at a tap: :data:`SWEEP_AFTER`, doubling, capped."""
    return min(SWEEP_AFTER * 2 ** min(attempt - 1, 20), MAX_TAP_BACKOFF)


def sweep_taps(now: datetime.datetime | None = None, stop: threading.Event | None = None) -> int:
    """
    Apply the taps left pending whose attempt is due and send their replies; log, never raise.

    A tap stays pending when the API server stopped between recording its push and applying it, and the vendor
    did not push it again (or not yet), or when its answer could not be recorded. Each attempt is counted first (in
    its own transaction); a failed one is tried again after :func:`_backoff`, and after :data:`MAX_TAP_ATTEMPTS`
    the tap is marked ``failed`` and an error is logged. Return how many were applied.

    :param now: The time of the sweep (UTC; default: now).
    :param stop: Set when the process exits: the sweep stops between two taps.
    """
    from airflow_provider_itnio.events import InboundEvent, parse_push
    from airflow_provider_itnio.webhook.store import give_up_tap, note_tap_attempt, pending_taps

    moment = now or datetime.datetime.now(datetime.UTC)
    try:
        with new_session() as session:
            found = pending_taps(session, moment, SWEEP_BATCH)
    except Exception as err:
        log.error("itnio HITL: cannot look for pending taps: %s", masked_error(err))
        return 0
    applied = 0
    for tap in found:
        if stop is not None and stop.is_set():
            break
        attempt = tap.attempts + 1
        try:
            with new_session() as session:
                if not note_tap_attempt(session, tap.id, tap.attempts, moment + _backoff(attempt)):
                    continue  # another process's sweep took it
        except Exception as err:
            log.error("itnio HITL: cannot count an attempt at a pending tap: %s", masked_error(err))
            continue
        phone: str | None = None
        try:
            if tap.raw is None:
                raise LookupError("its push is no longer recorded")
            event = parse_push(tap.raw)
            if not isinstance(event, InboundEvent):
                raise TypeError("its push is not a customer's message")
            phone = event.from_phone
            outcome = apply_tap(event, tap.conn_id, now=moment)
        except Exception as err:
            who = phone_digest(phone) if phone else "an unknown number"
            if attempt < MAX_TAP_ATTEMPTS:
                log.error(
                    "itnio HITL: attempt %d of %d at the tap %s from %s (connection %s) failed: %s; next in %s",
                    attempt,
                    MAX_TAP_ATTEMPTS,
                    tap.message_id,
                    who,
                    tap.conn_id,
                    masked_error(err, phone),
                    _backoff(attempt),
                )
                continue
            try:
                with new_session() as session:
                    give_up_tap(session, tap.id)
            except Exception as failed:
                log.error("itnio HITL: cannot mark the tap %s failed: %s", tap.message_id, masked_error(failed))
            log.error(
                "itnio HITL: gave up on the tap %s from %s (connection %s) after %d attempts: %s; it is not "
                "applied: the approver answers in the Airflow UI",
                tap.message_id,
                who,
                tap.conn_id,
                attempt,
                masked_error(err, phone),
            )
            continue
        if outcome is not None:
            applied += 1
            log.info("itnio HITL: applied a tap left pending (%s, connection %s)", outcome.code, tap.conn_id)
            if outcome.reply is not None:
                send_reply(tap.conn_id, event, outcome.reply)
    return applied


def sweep(now: datetime.datetime | None = None, stop: threading.Event | None = None) -> None:
    """
    Apply the taps left pending (:func:`sweep_taps`) and report the sends left in ``sending``
    (:func:`~airflow_provider_itnio.webhook.owed_buttons.sweep_sending`); log, never raise.

    :param now: The time of the sweep (UTC; default: now).
    :param stop: Set when the process exits.
    """
    try:
        sweep_taps(now, stop)
        if stop is None or not stop.is_set():
            sweep_sending(now)
    except Exception as err:  # never let the sweeper die
        log.error("itnio HITL: the sweep failed: %s", masked_error(err))


class Sweeper:
    """
    Run :func:`sweep` every :data:`SWEEP_INTERVAL` seconds in a thread of the API server process.

    Started with the receiver (its app's lifespan) and by each request it gets (:meth:`ensure`, once per process:
    a forked worker starts its own), so that a tap left pending is applied without waiting for another push.
    Stopped when the interpreter starts to exit, before Airflow disposes of its database engine.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure(self) -> None:
        """Start the sweeper thread of this process unless it runs."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            from airflow_provider_itnio.webhook.writer import _at_exit

            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="itnio-hitl-sweeper", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()
            _at_exit(self.stop)

    def stop(self, timeout: float = 10.0) -> None:
        """
        Stop the sweeper thread, letting it finish the transaction it is in (waits at most ``timeout`` seconds).

        :param timeout: Seconds to wait.
        """
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._stop.set()
        thread.join(timeout)
        self._pid = None

    @staticmethod
    def _run(stop: threading.Event) -> None:
        wait = 1.0  # the first sweep soon after the start: taps left pending by the process before
        while not stop.wait(wait):
            sweep(stop=stop)
            wait = SWEEP_INTERVAL


#: The process's sweeper.
sweeper = Sweeper()
