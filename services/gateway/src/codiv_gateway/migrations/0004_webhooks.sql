-- Webhooks (issue "Analyze"): endpoints per workspace and their deliveries, plus the
-- 'paused' post status (the post's Pinterest account needs reauthorisation).
ALTER TABLE posts DROP CONSTRAINT posts_status_check;
ALTER TABLE posts ADD CONSTRAINT posts_status_check
    CHECK (status IN ('scheduled', 'publishing', 'paused', 'published', 'failed', 'cancelled'));

CREATE TABLE webhooks (
    id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url text NOT NULL,
    events text[] NOT NULL,
    description text,
    -- the signing secret, AES-256-GCM (codiv_common.crypto.KeyRing, WEBHOOK_SECRET_KEYS),
    -- the webhook id as associated data: shown once at creation, needed to sign later
    secret_enc bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id, created_at);

-- One row per (webhook, event): its id is the delivery id receivers deduplicate on.
-- Inserted in the transaction that applies the event; a worker sends it later.
CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL,
    event_type text NOT NULL,
    event_id uuid NOT NULL,
    dedupe_key text NOT NULL,
    body jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error text,
    attempt_log jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    UNIQUE (webhook_id, dedupe_key)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (webhook_id, created_at DESC, id DESC);
