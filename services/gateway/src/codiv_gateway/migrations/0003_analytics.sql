-- Analytics read model, kept from pin.metrics and account.metrics: one row per post (or
-- account) and day. A day is replaced while Pinterest has not marked it final (READY),
-- and only by figures collected later; a final day is stored once.

CREATE TABLE post_metrics_daily (
    post_id uuid NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    day date NOT NULL,
    workspace_id uuid NOT NULL,
    data_status text,
    final boolean NOT NULL,
    metrics jsonb NOT NULL,            -- API names: impressions, saves, pin_clicks, ...
    collected_at timestamptz NOT NULL,
    PRIMARY KEY (post_id, day)
);
CREATE INDEX post_metrics_daily_workspace_day ON post_metrics_daily (workspace_id, day);

CREATE TABLE account_metrics_daily (
    workspace_id uuid NOT NULL,
    account_id text NOT NULL,
    day date NOT NULL,
    data_status text,
    final boolean NOT NULL,
    metrics jsonb NOT NULL,
    collected_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, account_id, day)
);
