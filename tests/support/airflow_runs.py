"""
Run DAGs through real Airflow in tests (``dag.test()`` on the session's SQLite database) and read their results.

Works on Airflow 2.11 and 3.x (their DagBag and ``dag.test()`` differ). The DAGs folder is the one
:mod:`tests.support.airflow_home` sets up.
"""

from __future__ import annotations

from typing import Any

from tests.support.airflow_home import DAGS_FOLDER


def run_dag(dag_id: str, conf: dict[str, Any] | None = None, *, logical_date: Any = None) -> Any:
    """
    Run a DAG from the DAGs folder through real Airflow (``dag.test()``) and return its DagRun.

    Works on Airflow 2.11 and 3.x (their DagBag and ``dag.test()`` differ).

    :param dag_id: The DAG to run.
    :param conf: The run's ``dag_run.conf``.
    :param logical_date: Run for this logical date; running the same date again clears and re-runs that run.
    """
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    # Airflow 2's DagBag would also load Airflow's example DAGs unless told not to; Airflow 3's has no such option
    options: dict[str, Any] = {"include_examples": False} if _airflow2() else {}
    bag = DagBag(dag_folder=str(DAGS_FOLDER), **options)
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"no DAG {dag_id!r} in {DAGS_FOLDER}"
    kwargs: dict[str, Any] = {}
    if conf is not None:
        kwargs["run_conf"] = conf
    if logical_date is not None:
        if _airflow2():
            # re-running a date deletes the old DagRun, whose note refers to FAB's ab_user table: load that model
            import airflow.providers.fab.auth_manager.models  # noqa: F401

            kwargs["execution_date"] = logical_date
        else:
            kwargs.update(run_after=logical_date, logical_date=logical_date)
    return dag.test(**kwargs)


def _airflow2() -> bool:
    import airflow

    return airflow.__version__.startswith("2.")


def task_states(dag_run: Any) -> dict[str, tuple[str, int]]:
    """``{task_id: (state, try_number)}`` of a finished DagRun."""
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances()}


def xcom_value(dag_run: Any, task_id: str) -> Any:
    """Return the ``return_value`` XCom a task of ``dag_run`` pushed."""
    return dag_run.get_task_instance(task_id).xcom_pull(task_ids=task_id)
