"""
The Airflow asset events of the receiver's pushes (Airflow 3.1+): kept with the push, then written by the writer.

A push recorded for the first time is an event of its asset (:mod:`airflow_provider_itnio.assets`) when a DAG uses
that asset. The push's transaction keeps the event in the provider's outbox table (``itnio_asset_outbox``, one
``INSERT`` for the whole group): once the vendor has its 200, the event is in the database and cannot be lost. The
receiver's writer turns the outbox into asset events in transactions of their own (:func:`write_outbox`), at most
every ``[itnio] webhook_asset_events_interval`` seconds (0.25) while pushes keep coming, at once after a quiet
spell; each outbox row is deleted in the transaction that writes its event, so each is written once. Rows a
process left behind (killed between the two) are written by the next writer that records a push.

Why not in the push's own transaction: Airflow's asset manager (``register_asset_change``) cost 1.9 of the 2.8 ms
of CPU a push took on one API server process (``bench/RESULTS.md``, "Receiver"), and what it does is needed once
per asset and transaction: it writes the event, queues the DAGs scheduled on the asset (one queue row per DAG and
asset) and hands back the listener calls to make. So the first event of each asset in a transaction goes through
it, and the next events of that asset in the same transaction are written as what remains, where that is exactly
what the asset manager would do: their ``asset_event`` rows (one ``INSERT``), the same listener calls with their own
``extra``, and the ``asset.updates`` metric. Writing a quarter second of pushes per transaction instead of one group
of about 16 makes the asset manager's share small.

The shortcut is taken only where it changes nothing: the deployment uses Airflow's own asset manager (a
``[core] asset_manager_class`` of its own sees every event), the manager hands back its listener calls
(``callback_sink``, so they can be repeated for each event), and the first call left nothing else in the session
(Airflow writes a log row for each event a partition-aware DAG cannot use; those assets keep one call per event).

**Which inbound assets.** An inbound message's outbox row names the unnarrowed asset (``itnio://<conn_id>/inbound``);
the transaction that writes it also writes its event on each narrowed inbound asset of the connection
(:func:`airflow_provider_itnio.assets.inbound_messages` with a filter) that a DAG uses and whose filter takes the
message: the narrowed assets are read from Airflow's asset table once per transaction, so a DAG parsed a moment ago
counts, and the row is deleted with all its events (each written once, or none). A tap on an approval's button
(its id starts with the HITL notifier's prefix, whether it verifies or not:
:func:`~airflow_provider_itnio.webhook.store.is_approval_tap`) gets no outbox row: it answers the approval
(:mod:`airflow_provider_itnio.webhook.taps`) and is no inbound asset's event.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from airflow_provider_itnio.events import InboundEvent, StatusEvent, asset_extra
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.models import asset_outbox_table
from airflow_provider_itnio.webhook.store import is_approval_tap

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio webhook receiver")

from airflow_provider_itnio.assets import (
    InboundFilter,
    inbound_filter,
    inbound_messages_uri,
    message_status_uri,
)

__all__ = ["AssetEvents", "TakenByAnother", "Written", "keep_in_outbox", "outbox_row", "write_outbox"]

#: The most outbox rows one transaction of the writer turns into asset events.
OUTBOX_BATCH = 2000
#: How the URI of an unnarrowed inbound asset ends (``itnio://<conn_id>/inbound``; a narrowed one has a query).
_INBOUND_SUFFIX = "/inbound"

log = logging.getLogger(__name__)


@functools.cache
def _asset_change_arguments() -> frozenset[str]:
    """Return the keyword arguments this Airflow's ``AssetManager.register_asset_change`` names."""
    from airflow.assets.manager import AssetManager

    return frozenset(inspect.signature(AssetManager.register_asset_change).parameters)


def _asset_uri(event: StatusEvent | InboundEvent, conn_id: str) -> str | None:
    """Return the URI of the asset the push is an event of, or ``None`` when the connection id cannot be in one."""
    try:
        if isinstance(event, StatusEvent):
            return message_status_uri(conn_id, event.status.value)
        return inbound_messages_uri(conn_id)
    except ValueError:
        return None


def _with_extra(notify: Callable[[], None], extra: dict[str, Any]) -> Callable[[], None] | None:
    """
    Return the listener call ``notify`` (made by ``register_asset_change`` for another event of the same asset)
    for an event whose ``extra`` is ``extra``; ``None`` when it cannot be made for it.

    :param notify: A call from the asset manager's ``callback_sink``: a ``functools.partial`` whose ``asset_event``
        keyword (if any) is the listeners' view of the event.
    :param extra: The new event's ``extra``.
    """
    if not isinstance(notify, functools.partial):
        return None
    event = notify.keywords.get("asset_event")
    if event is None:  # on_asset_changed(asset=...): the same call for every event of the asset
        return notify
    changed = copy.copy(event)  # Airflow's listener AssetEvent (a mutable attrs class)
    try:
        changed.extra = extra
    except AttributeError:  # frozen (attrs' and dataclasses' errors are AttributeErrors), or no such field
        return None
    return functools.partial(notify.func, *notify.args, **{**notify.keywords, "asset_event": changed})


def _metrics() -> Any:
    """Return the metrics client the asset manager counts ``asset.updates`` with (Airflow 3.3: ``stats``)."""
    from airflow.assets import manager

    return getattr(manager, "stats", None) or getattr(manager, "Stats", None)


@dataclasses.dataclass
class _Asset:
    """An asset looked up in the transaction: its id, and what its next events repeat (``None``: a full call)."""

    model: Any
    notifications: list[Callable[[], None]] | None = None
    #: The DAGs with a queue row for the asset right after its first event (see :meth:`AssetEvents.flush`).
    queued: frozenset[str] = frozenset()
    #: Whether shortcut rows of this asset wait for :meth:`AssetEvents.flush`.
    shortcut: bool = False


class AssetEvents:
    """
    Write asset events in one transaction of the receiver's writer (see the module's docstring).

    :param session: The transaction's session; call :meth:`flush` before committing.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._assets: dict[str, _Asset | None] = {}
        self._rows: list[dict[str, Any]] = []
        self._narrowed: dict[str, list[tuple[str, InboundFilter]]] = {}

    def targets(self, uri: str, extra: dict[str, Any]) -> list[str]:
        """
        Return the assets an outbox row's event goes to: its own, and for an inbound message each narrowed inbound
        asset of the same connection that a DAG uses and whose filter takes it (in URI order).

        :param uri: The outbox row's asset (an inbound message's: the unnarrowed one).
        :param extra: The event's extra.
        """
        if not uri.endswith(_INBOUND_SUFFIX):
            return [uri]
        return [uri, *(narrowed for narrowed, wanted in self._narrowed_of(uri) if wanted.matches(extra))]

    def _narrowed_of(self, uri: str) -> list[tuple[str, InboundFilter]]:
        """Return the narrowed inbound assets (URI and filter) of the connection of ``uri`` that DAGs use."""
        if uri not in self._narrowed:
            from airflow.models.asset import AssetModel

            query = select(AssetModel.uri).where(
                AssetModel.uri.startswith(f"{uri}?", autoescape=True),
                AssetModel.name == AssetModel.uri,
                AssetModel.active.has(),
            )
            found: list[tuple[str, InboundFilter]] = []
            for narrowed in sorted(self._session.scalars(query)):
                try:
                    wanted = inbound_filter(narrowed)
                except ValueError as err:  # written by hand, or by a newer provider: take nothing rather than all
                    log.warning("itnio webhook: the asset %s cannot be read as a filter; no events: %s", narrowed, err)
                    continue
                if wanted is not None:
                    found.append((narrowed, wanted))
            self._narrowed[uri] = found
        return self._narrowed[uri]

    def add(self, uri: str, extra: dict[str, Any], notifications: list[Callable[[], None]]) -> None:
        """
        Record an event of the asset ``uri``, when a DAG uses it; put the listener calls into ``notifications``.

        Nothing is recorded when no DAG uses the asset (it is not in the database, or no longer active): a push
        nobody schedules on is only stored in the provider's tables. The row of a shortcut event is kept for
        :meth:`flush` as soon as this returns.

        :param uri: The asset's URI (and name).
        :param extra: The event's extra.
        :param notifications: Gets the listener calls to make once the transaction is committed.
        """
        asset = self._lookup(uri)
        if asset is None:
            return
        if asset.notifications is not None:
            repeated = [_with_extra(notify, extra) for notify in asset.notifications]
            if all(notify is not None for notify in repeated):
                notifications += [notify for notify in repeated if notify is not None]
                metrics = _metrics()
                if metrics is not None:
                    metrics.incr("asset.updates", tags={})
                self._rows.append({"asset_id": asset.model.id, "extra": extra})
                asset.shortcut = True
                return
        self._register(asset, extra, notifications)

    def flush(self) -> None:
        """
        Insert the events kept by the shortcut (one statement), in the order they were added, and queue again a
        DAG whose queue row for the asset was taken meanwhile.

        One ``register_asset_change`` per event would write the asset's queue rows again at each event: when the
        scheduler consumed one after the first event of the transaction (it can on PostgreSQL, where the first
        call's ``INSERT ... ON CONFLICT DO NOTHING`` on an existing row does not lock it), the next events queue
        the DAG again. So the rows there right after the first event are written again where they are missing.
        """
        if not self._rows:
            return
        from airflow.models.asset import AssetDagRunQueue, AssetEvent

        rows, self._rows = self._rows, []
        self._session.execute(insert(AssetEvent), rows)
        for asset in self._assets.values():
            if asset is None or not asset.shortcut or not asset.queued:
                continue
            asset.shortcut = False
            for dag_id in sorted(asset.queued - _queued_dags(self._session, asset.model.id)):
                try:
                    with self._session.begin_nested():
                        self._session.add(AssetDagRunQueue(asset_id=asset.model.id, target_dag_id=dag_id))
                except IntegrityError:  # queued again by somebody else meanwhile: as Airflow's own call
                    pass

    def _lookup(self, uri: str) -> _Asset | None:
        from airflow.models.asset import AssetModel

        if uri not in self._assets:
            model = self._session.scalar(
                select(AssetModel).where(AssetModel.name == uri, AssetModel.uri == uri, AssetModel.active.has())
            )
            self._assets[uri] = None if model is None else _Asset(model)
            if model is None:
                log.debug("itnio webhook: no DAG uses the asset %s; no asset event", uri)
        return self._assets[uri]

    def _register(self, asset: _Asset, extra: dict[str, Any], notifications: list[Callable[[], None]]) -> None:
        """Record one event through Airflow's asset manager; learn from it whether the next ones can be shortcut."""
        from airflow.assets.manager import AssetManager, asset_manager

        if "callback_sink" not in _asset_change_arguments():  # it tells the listeners itself
            asset_manager.register_asset_change(asset=asset.model, extra=extra, session=self._session)
            return
        from airflow.models.asset import AssetDagRunQueue, AssetEvent

        mine: list[Callable[[], None]] = []
        attached: list[object] = []

        def on_attach(session: Session, obj: object) -> None:
            attached.append(obj)

        sa_event.listen(self._session, "after_attach", on_attach)
        try:
            recorded = asset_manager.register_asset_change(
                asset=asset.model, extra=extra, session=self._session, callback_sink=mine
            )
        finally:
            sa_event.remove(self._session, "after_attach", on_attach)
        notifications += mine
        if recorded is None or type(asset_manager) is not AssetManager:
            return
        if any(not isinstance(obj, AssetEvent | AssetDagRunQueue) for obj in attached):
            return  # it wrote more than the event and the queue (a log row for a partition-aware DAG)
        asset.notifications = mine
        asset.queued = _queued_dags(self._session, asset.model.id)


def _queued_dags(session: Session, asset_id: int) -> frozenset[str]:
    """Return the DAGs with a queue row (``asset_dag_run_queue``) for the asset ``asset_id``."""
    from airflow.models.asset import AssetDagRunQueue

    query = select(AssetDagRunQueue.target_dag_id).where(AssetDagRunQueue.asset_id == asset_id)
    return frozenset(session.scalars(query))


def outbox_row(event: StatusEvent | InboundEvent, conn_id: str, now: datetime.datetime) -> dict[str, Any] | None:
    """
    Return the outbox row of a push recorded for the first time, or ``None`` when it cannot be an asset event (a
    tap on an approval's button, a connection id no URI can hold).

    :param event: The push.
    :param conn_id: The connection whose address received it.
    :param now: The time it was recorded (UTC).
    """
    if isinstance(event, InboundEvent) and is_approval_tap(event):
        return None  # the approval layer's (webhook/taps.py), no inbound asset's
    uri = _asset_uri(event, conn_id)
    if uri is None:
        log.warning("itnio webhook %s: the connection id cannot be in an asset URI; no asset event", conn_id)
        return None
    return {"conn_id": conn_id, "asset_uri": uri, "extra": asset_extra(event), "created_at": now}


def keep_in_outbox(session: Session, rows: list[dict[str, Any]]) -> None:
    """
    Insert ``rows`` (from :func:`outbox_row`) into the outbox, in one statement, in the push's transaction.

    :param session: The transaction that records the pushes.
    :param rows: The rows, in the order of the pushes.
    """
    if rows:
        session.execute(insert(asset_outbox_table), rows)


class TakenByAnother(Exception):
    """Outbox rows were deleted by another writer meanwhile: their events are that writer's (rolled back here)."""


@dataclasses.dataclass
class Written:
    """What :func:`write_outbox` did: rows taken, rows left in the outbox, listener calls to make after the commit."""

    taken: int = 0
    left: int = 0
    #: Whether it stopped at its limit (more rows may be waiting).
    more: bool = False
    #: Whether it could not do its work (the database down or locked, the outbox unreadable): rows may be waiting.
    failed: bool = False
    notifications: list[Callable[[], None]] = dataclasses.field(default_factory=list)


def write_outbox(
    session: Session,
    *,
    one_by_one: bool = False,
    database_down: tuple[type[BaseException], ...] = (),
    asset_uri: str | None = None,
    limit: int = OUTBOX_BATCH,
) -> Written:
    """
    Turn the oldest outbox rows (up to ``limit``, in id order) into asset events, deleting each row with its event.

    :param session: A write transaction (the writer's turn): nobody else takes the same rows. The caller commits,
        then makes the listener calls of the answer.
    :param one_by_one: Write each row in a savepoint of its own: a row whose event fails (an error of that row,
        not of the database) is logged and left in the outbox, the others are written. Otherwise any error fails
        the whole transaction (the caller then tries again one by one).
    :param database_down: The errors of the database itself, which fail the whole transaction even one by one.
    :param asset_uri: Take only the rows of this asset (default: every asset's).
    :param limit: The most rows taken.
    """
    columns = asset_outbox_table.c
    query = select(columns.id, columns.conn_id, columns.asset_uri, columns.extra)
    if asset_uri is not None:
        query = query.where(columns.asset_uri == asset_uri)
    rows = session.execute(query.order_by(columns.id).limit(limit)).all()
    written = Written(taken=len(rows), more=len(rows) >= limit)
    events = AssetEvents(session)
    if not one_by_one:
        for row in rows:
            for uri in events.targets(row.asset_uri, row.extra):
                events.add(uri, row.extra, written.notifications)
        events.flush()
        if rows:
            deleted: Any = session.execute(delete(asset_outbox_table).where(columns.id.in_([row.id for row in rows])))
            if deleted.rowcount != len(rows):  # another writer took some (a database without the writers' lock)
                raise TakenByAnother(f"{len(rows) - deleted.rowcount} of {len(rows)} outbox rows")
        return written
    for row in rows:
        mine: list[Callable[[], None]] = []
        try:
            with session.begin_nested():
                for uri in events.targets(row.asset_uri, row.extra):
                    events.add(uri, row.extra, mine)
                events.flush()
                deleted = session.execute(delete(asset_outbox_table).where(columns.id == row.id))
                if deleted.rowcount != 1:
                    raise TakenByAnother(f"outbox row {row.id}")
        except database_down:
            raise
        except TakenByAnother:  # its event is another writer's: nothing of it kept here
            events = AssetEvents(session)
            written.taken -= 1
            continue
        except Exception as err:
            events = AssetEvents(session)  # what it learned may have been rolled back with the savepoint
            written.left += 1
            log.warning(
                "itnio webhook %s: the asset event of outbox row %s failed; kept to try again: %s",
                row.conn_id,
                row.id,
                err,
            )
            continue
        written.notifications += mine
    return written
