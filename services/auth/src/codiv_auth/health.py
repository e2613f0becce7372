"""Account health: warn (account.token_expiring) when a refresh token nears its expiry
while refreshes keep failing, once per refresh token."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from codiv_common.events import AccountTokenExpiring, AccountTokenExpiringEvent
from codiv_common.logging import get_logger

from .adapters.postgres import AccountRepository

log = get_logger(__name__)

PRODUCER = "auth"


@dataclass(frozen=True)
class ExpiryPolicy:
    within: dt.timedelta = dt.timedelta(days=7)
    min_failures: int = 3


def should_warn(
    *,
    status: str,
    refresh_expires_at: dt.datetime | None,
    failures: int,
    notified_for: dt.datetime | None,
    now: dt.datetime,
    policy: ExpiryPolicy,
) -> bool:
    """The rule: an active account whose refresh token expires within ``policy.within``,
    after at least ``policy.min_failures`` failed refreshes in a row, not yet warned for
    this token. An expiry in the past still warns (the customer must reconnect)."""
    return (
        status == "active"
        and refresh_expires_at is not None
        and refresh_expires_at - now <= policy.within
        and failures >= policy.min_failures
        and notified_for != refresh_expires_at
    )


class ExpiryWatch:
    """Called after each failed refresh (``Tokens.on_refresh_failure``)."""

    def __init__(self, repo: AccountRepository, policy: ExpiryPolicy) -> None:
        self._repo = repo
        self._policy = policy

    async def __call__(self, account_id: uuid.UUID) -> bool:
        """Emit account.token_expiring if the rule holds; True when it was emitted."""
        async with self._repo.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT workspace_id, profile_id, status, refresh_expires_at, refresh_failures,"
                " expiring_notified_for, now() AS now FROM accounts WHERE id = $1 FOR UPDATE",
                account_id,
            )
            if row is None or not should_warn(
                status=row["status"],
                refresh_expires_at=row["refresh_expires_at"],
                failures=row["refresh_failures"],
                notified_for=row["expiring_notified_for"],
                now=row["now"],
                policy=self._policy,
            ):
                return False
            await conn.execute(
                "UPDATE accounts SET expiring_notified_for = refresh_expires_at WHERE id = $1",
                account_id,
            )
            await self._repo.emit(
                conn,
                AccountTokenExpiringEvent(
                    workspace_id=row["workspace_id"],
                    producer=PRODUCER,
                    payload=AccountTokenExpiring(
                        account_id=str(account_id),
                        profile_id=row["profile_id"],
                        refresh_token_expires_at=row["refresh_expires_at"],
                    ),
                ),
            )
        log.warning(
            "account_token_expiring",
            account_id=str(account_id),
            refresh_token_expires_at=row["refresh_expires_at"].isoformat(),
            failures=row["refresh_failures"],
        )
        return True
