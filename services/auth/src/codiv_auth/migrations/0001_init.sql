-- auth schema: connected Pinterest accounts with encrypted tokens, used OAuth state nonces.

-- One row per connected Pinterest account. Uniqueness: a profile has at most one
-- Pinterest account (profile_id), and a Pinterest user is connected at most once per
-- workspace (workspace_id, pinterest_user_id). Tokens are AES-256-GCM ciphertexts
-- (codiv_common.crypto.KeyRing format, the account id as associated data); token_key_id
-- names the key both were written under, so rotation finds rows cheaply.
CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    profile_id uuid NOT NULL UNIQUE,
    profile_name text NOT NULL,
    pinterest_user_id text NOT NULL,
    username text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_reauth')),
    status_reason text,
    scopes text NOT NULL DEFAULT '',
    access_token_enc bytea NOT NULL,
    refresh_token_enc bytea NOT NULL,
    token_key_id text NOT NULL,
    -- bumped each time new tokens are stored (or the grant is declared dead): a refresh
    -- stores its result only if the generation it started from is still current
    token_generation bigint NOT NULL DEFAULT 1,
    access_issued_at timestamptz NOT NULL,
    access_expires_at timestamptz NOT NULL,
    refresh_expires_at timestamptz,
    -- the refresh loop's schedule and lease (claimed with FOR UPDATE SKIP LOCKED)
    refresh_due_at timestamptz NOT NULL,
    refresh_claim uuid,
    refresh_claimed_until timestamptz,
    refresh_failures integer NOT NULL DEFAULT 0,
    refresh_retry_at timestamptz,
    last_refresh_error text,
    token_refreshed_at timestamptz,
    -- the board sync's schedule and lease
    boards jsonb NOT NULL DEFAULT '[]'::jsonb,
    boards_hash text,
    boards_synced_at timestamptz,
    boards_sync_due_at timestamptz NOT NULL DEFAULT now(),
    boards_sync_force boolean NOT NULL DEFAULT true,
    boards_sync_claim uuid,
    boards_sync_claimed_until timestamptz,
    boards_sync_failures integer NOT NULL DEFAULT 0,
    connected_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, pinterest_user_id)
);

CREATE INDEX accounts_refresh_due ON accounts (refresh_due_at) WHERE status = 'active';
CREATE INDEX accounts_boards_sync_due ON accounts (boards_sync_due_at) WHERE status = 'active';
CREATE INDEX accounts_token_key_id ON accounts (token_key_id);

-- Nonces of OAuth states already presented to the callback: a state works once.
CREATE TABLE oauth_states_used (
    nonce text PRIMARY KEY,
    workspace_id uuid NOT NULL,
    profile_id uuid NOT NULL,
    used_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX oauth_states_used_expires_at ON oauth_states_used (expires_at);
