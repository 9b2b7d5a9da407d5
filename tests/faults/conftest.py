"""Fixtures of the fault suite: a private PostgreSQL cluster for the run, a private Redis and a
fresh database per test, and `bulwark serve` (2 granian workers, production settings) on them."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault_servers import (
    IN_CI,
    EngineMissing,
    MailSink,
    PrivatePostgres,
    PrivateRedis,
    mail_sink,
    private_postgres,
    private_redis,
)


def _missing(error: EngineMissing) -> None:
    if IN_CI:
        pytest.fail(f"{error}; under CI=true a missing engine is a failure", pytrace=False)
    pytest.skip(str(error))


@pytest.fixture(scope="session")
def fault_pg() -> Iterator[PrivatePostgres]:
    try:
        with private_postgres() as server:
            yield server
    except EngineMissing as error:
        _missing(error)


@pytest.fixture
def fault_redis() -> Iterator[PrivateRedis]:
    try:
        with private_redis() as server:
            yield server
    except EngineMissing as error:
        _missing(error)


@pytest.fixture
def fault_db(fault_pg: PrivatePostgres) -> str:
    return fault_pg.create_database(f"bulwark_fault_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with mail_sink() as s:
        yield s


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
