"""`conveyor deploy`'s work pool (flows.deploy.ensure_work_pool) against a temporary Prefect server:
made with the process worker's job template, as `prefect work-pool create --type process` makes it,
so no worker connecting to the embedded SQLite server has to write one (that write once held the
server's database lock for 60 s, a CI run); a pool an older Conveyor made without one gets it."""

from __future__ import annotations

import pytest

from flows import deploy


@pytest.fixture(scope="module")
def client():
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120), get_client(sync_client=True) as client:
        yield client


def test_the_pool_is_created_with_the_process_workers_job_template(client):
    from prefect.workers.process import ProcessWorker

    assert deploy.ensure_work_pool("fresh") is True
    pool = client.read_work_pool("fresh")
    assert pool.type == "process"
    assert pool.base_job_template == ProcessWorker.get_default_base_job_template()
    assert deploy.ensure_work_pool("fresh") is False  # a second deploy finds it


def test_a_pool_made_without_a_template_gets_it_and_another_type_is_refused(client):
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    client.create_work_pool(WorkPoolCreate(name="older", type="process"))
    assert not client.read_work_pool("older").base_job_template
    assert deploy.ensure_work_pool("older") is False
    assert client.read_work_pool("older").base_job_template == ProcessWorker.get_default_base_job_template()

    client.create_work_pool(WorkPoolCreate(name="elsewhere", type="docker"))
    with pytest.raises(RuntimeError, match="'elsewhere' is of type 'docker'.*--pool"):
        deploy.ensure_work_pool("elsewhere")
