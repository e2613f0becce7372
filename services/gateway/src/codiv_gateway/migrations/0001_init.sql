-- gateway schema: workspaces, API keys (hashed), profiles, the accounts/boards read model,
-- posts with their timeline, monthly usage, idempotency keys and rate-limit windows.
CREATE TABLE workspaces (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    plan text NOT NULL CHECK (plan IN ('free', 'pro')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    prefix text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE profiles (
    id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    boards_synced_at timestamptz,
    UNIQUE (workspace_id, name)
);

-- Read model of auth's accounts, one per profile, kept from account.* events.
CREATE TABLE accounts (
    profile_id uuid PRIMARY KEY REFERENCES profiles (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL,
    account_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('connected', 'needs_reauth', 'disconnected')),
    username text,
    reason text,
    refresh_token_expires_at timestamptz,
    connected_at timestamptz,
    last_event_at timestamptz NOT NULL
);

CREATE TABLE boards (
    profile_id uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    board_id text NOT NULL,
    name text NOT NULL,
    privacy text,
    sections jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (profile_id, board_id)
);

CREATE TABLE posts (
    id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    profile_id uuid NOT NULL,
    profile_name text NOT NULL,
    status text NOT NULL
        CHECK (status IN ('scheduled', 'publishing', 'published', 'failed', 'cancelled')),
    post_type text NOT NULL,
    request jsonb NOT NULL,
    content jsonb NOT NULL,
    board_id text NOT NULL,
    board_name text,
    scheduled_at timestamptz,
    revision integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    pin_id text,
    pin_url text,
    error jsonb,
    warnings jsonb NOT NULL DEFAULT '[]',
    released_at timestamptz,
    published_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX posts_workspace_created ON posts (workspace_id, created_at DESC, id DESC);
CREATE INDEX posts_profile ON posts (profile_id, status);

CREATE TABLE post_timeline (
    id bigserial PRIMARY KEY,
    post_id uuid NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    attempt integer,
    message text
);
CREATE INDEX post_timeline_post ON post_timeline (post_id, at, id);

-- Uploads per workspace and calendar month (UTC); incremented with a conditional UPSERT.
CREATE TABLE usage (
    workspace_id uuid NOT NULL,
    period date NOT NULL,
    uploads integer NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, period)
);

-- Inserted first in the request's transaction: a concurrent retry waits on the key.
CREATE TABLE idempotency_keys (
    workspace_id uuid NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    status integer,
    body jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Fixed-window request counters shared by every gateway replica.
CREATE TABLE rate_limit_windows (
    api_key_id uuid NOT NULL,
    window_start timestamptz NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (api_key_id, window_start)
);
