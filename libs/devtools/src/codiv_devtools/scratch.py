"""Throw-away databases and broker names for tests, benchmarks and chaos runs."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

# Every queue a run can create (each also has a ``.dead`` twin): the services' queues
# and the probe queues tests bind to observe events.
QUEUE_SUFFIXES = (
    "gateway",
    "gateway.ingest",
    "scheduler",
    "publisher",
    "auth",
    "test",
    "analytics",
)
EXCHANGE_SUFFIXES = ("", ".dlx", ".ingest")


def database_url_for(server_url: str, name: str) -> str:
    """``server_url`` pointing at database ``name`` instead."""
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


async def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url``; return its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url_for(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name``, disconnecting whoever still uses it."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def drop_broker_names(amqp_url: str, exchange: str, queue_prefix: str) -> None:
    """Delete a run's queues (``<prefix><suffix>`` and ``.dead``) and its exchanges."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for suffix in QUEUE_SUFFIXES:
            for name in (f"{queue_prefix}{suffix}", f"{queue_prefix}{suffix}.dead"):
                try:
                    await channel.queue_delete(name)
                except aio_pika.exceptions.ChannelClosed:
                    channel = await connection.channel()
        for suffix in EXCHANGE_SUFFIXES:
            try:
                await channel.exchange_delete(exchange + suffix)
            except aio_pika.exceptions.ChannelClosed:
                channel = await connection.channel()
    finally:
        await connection.close()
