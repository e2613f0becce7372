"""AMQP entry points of the scheduler service."""

from __future__ import annotations

from codiv_common.events import Event

from .service import SchedulerService


class EventConsumer:
    """Consumer of queue `scheduler`.

    Routing keys: `post.requested`, `post.cancelled`, `post.rescheduled`, `post.retry`.

    Idempotent through the inbox: the event id is recorded in the same transaction as
    the job change (and any post.change_rejected outbox row), so a redelivered event
    changes nothing. The message is acked only after that transaction committed; a
    database outage is retried by the consumer wrapper, any other error requeues it
    until the queue's delivery limit dead-letters it.
    """

    def __init__(self, service: SchedulerService) -> None:
        self._service = service

    async def handle(self, event: Event) -> None:
        await self._service.apply(event)
