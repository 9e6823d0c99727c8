"""The dag.test() harness other tests rely on actually runs a DAG against the metadata DB."""

from __future__ import annotations

SOURCE = """
import pendulum
from airflow_provider_aep.version_compat import dag, task

@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def harness_check():
    @task
    def one():
        return 1

    @task
    def plus_one(x):
        return x + 1

    plus_one(one())

harness_check_dag = harness_check()
"""


def test_dag_test_runs_a_dag_from_the_dags_folder(load_dag_file):
    module = load_dag_file(SOURCE, "harness_check")
    run = module.harness_check_dag.test()
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"one": "success", "plus_one": "success"}
