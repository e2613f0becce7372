"""Test harness: real PostgreSQL and RabbitMQ, isolated per test.

Where they come from, in order: ``DATABASE_URL`` / ``AMQP_URL`` when set; the local
services on 127.0.0.1 (PostgreSQL 5432 trust auth as postgres, RabbitMQ 5672
guest/guest); testcontainers when a Docker engine exists; otherwise the run stops
with one line saying what is missing. Each test that asks for ``database_url`` gets
a database created for it and dropped afterwards; each test that asks for
``broker`` gets its own exchange and queue names, deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from codiv_devtools.scratch import create_database, drop_broker_names, drop_database

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
RUN_ID = uuid.uuid4().hex[:8]


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    return shutil.which("docker") is not None and os.path.exists("/var/run/docker.sock")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A DSN on the PostgreSQL server (its maintenance database) the tests may use."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    if _reachable(LOCAL_PG, 5432):
        yield LOCAL_PG
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    pytest.exit("PostgreSQL is missing: set DATABASE_URL or start it on 127.0.0.1:5432", 3)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """An AMQP URL of the RabbitMQ the tests may use."""
    url = os.environ.get("AMQP_URL")
    if url:
        yield url
        return
    if _reachable(LOCAL_AMQP, 5672):
        yield LOCAL_AMQP
        return
    if _docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-alpine") as rmq:
            params = rmq.get_connection_params()
            yield f"amqp://guest:guest@{params.host}:{params.port}/"
        return
    pytest.exit("RabbitMQ is missing: set AMQP_URL or start it on 127.0.0.1:5672", 3)


@pytest.fixture
async def database_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test (dropped afterwards)."""
    name = f"codiv_t_{RUN_ID}_{uuid.uuid4().hex[:10]}"
    url = await create_database(pg_server_url, name)
    try:
        yield url
    finally:
        await drop_database(pg_server_url, name)


@dataclass(frozen=True)
class BrokerNames:
    """Exchange and queue names private to one test."""

    url: str
    exchange: str
    queue_prefix: str


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[BrokerNames]:
    """Unique exchange and queue prefix for this test; its queues and exchanges are deleted."""
    tag = f"t{RUN_ID}{uuid.uuid4().hex[:8]}"
    names = BrokerNames(url=amqp_url, exchange=f"codiv.{tag}", queue_prefix=f"{tag}.")
    yield names
    await drop_broker_names(amqp_url, names.exchange, names.queue_prefix)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
