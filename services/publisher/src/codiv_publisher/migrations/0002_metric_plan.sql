-- Metric collection plan: one row per published pin (inserted in the transaction that
-- records the publication), and one row per Pinterest account for daily account analytics.
-- Due rows are claimed with FOR UPDATE SKIP LOCKED and a lease, so replicas share them.

CREATE TABLE metric_plan (
    post_id uuid PRIMARY KEY,
    pin_id text NOT NULL,
    workspace_id uuid NOT NULL,
    account_id text NOT NULL,
    post_type text NOT NULL,               -- image | carousel | video (publications.kind)
    published_at timestamptz NOT NULL,
    stage integer NOT NULL DEFAULT 0,      -- collections done so far
    next_collect_at timestamptz,           -- NULL: the plan is over
    final_through date,                    -- every day up to here is final (READY)
    last_collected_at timestamptz,
    lease_until timestamptz,               -- a collector works on it until then
    failures integer NOT NULL DEFAULT 0,
    last_error text
);

CREATE INDEX metric_plan_due ON metric_plan (next_collect_at) WHERE next_collect_at IS NOT NULL;

CREATE TABLE analytics_accounts (
    account_id text PRIMARY KEY,
    workspace_id uuid NOT NULL,
    profile_id uuid,
    active boolean NOT NULL DEFAULT true,
    state_at timestamptz NOT NULL,         -- when the event that set `active` happened
    next_collect_at timestamptz NOT NULL,
    final_through date,
    last_collected_at timestamptz,
    lease_until timestamptz,
    failures integer NOT NULL DEFAULT 0,
    last_error text
);

CREATE INDEX analytics_accounts_due ON analytics_accounts (next_collect_at) WHERE active;
