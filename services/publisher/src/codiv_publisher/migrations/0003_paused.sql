-- Posts paused because their Pinterest account needs reauthorisation (state 'paused').
-- They resume in due order when the account is reconnected (account.connected), fail when
-- it is disconnected, or fail after the grace period (PAUSE_GRACE_HOURS).
ALTER TABLE publications
    ADD COLUMN paused_at timestamptz,
    ADD COLUMN paused_reason text,
    -- what a resume needs to put the post back through the scheduler (post.retry)
    ADD COLUMN paused_content jsonb,
    ADD COLUMN paused_correlation_id uuid,
    ADD COLUMN due_at timestamptz;

CREATE INDEX publications_paused_idx ON publications (account_id, due_at)
    WHERE state = 'paused';
CREATE INDEX publications_paused_at_idx ON publications (paused_at) WHERE state = 'paused';

-- When this publisher last saw each account reconnected: a run that met "needs reauth"
-- before a reconnect it had not seen yet retries instead of pausing (no lost resume).
CREATE TABLE account_reconnects (
    account_id text PRIMARY KEY,
    reconnected_at timestamptz NOT NULL
);
