"""AMQP entry points of the publisher service."""

from __future__ import annotations

from codiv_common.events import Event, PostDueEvent
from codiv_common.logging import get_logger

from .service import PublishService

log = get_logger(__name__)


class PostDueConsumer:
    """Consumer of queue `publisher`, routing key `post.due`.

    Idempotency is the post's row in the publisher schema, not the event id: the same
    post.due coming back after a crash must run again (and first reconcile with
    Pinterest), while a post already published or failed is acked untouched, and an
    older attempt than the one awaited is dropped. The message is acked only after the
    run's outcome (pin recorded + post.published, post.failed, or post.retry) committed
    with its outbox rows; infrastructure errors leave it to the consumer wrapper to retry.
    """

    def __init__(self) -> None:
        self._service: PublishService | None = None

    def bind(self, service: PublishService) -> None:
        """Attach the service once its HTTP sessions exist (at application start-up)."""
        self._service = service

    async def handle(self, event: Event) -> None:
        if not isinstance(event, PostDueEvent):
            log.warning("event_ignored", type=event.type)
            return
        if self._service is None:
            raise RuntimeError("publisher service not started")
        await self._service.handle_due(event)
