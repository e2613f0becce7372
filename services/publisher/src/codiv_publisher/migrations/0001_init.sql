-- publisher schema: one row per post being published, its attempts, its video upload,
-- and a write-pacing slot per Pinterest account shared by every replica.

CREATE TABLE publications (
    post_id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    account_id text,
    board_id text NOT NULL,
    kind text NOT NULL,
    -- new | in_flight | waiting (a post.retry is scheduled) | published | failed
    state text NOT NULL,
    attempt integer NOT NULL,          -- the post.due attempt number last run
    next_attempt integer NOT NULL,     -- the attempt number the next post.due must carry
    failures integer NOT NULL DEFAULT 0,
    -- why the post waits: failure (announce a new attempt) | pacing | media_poll
    resume_reason text,
    reserved_slot timestamptz,         -- a pacing slot taken for this post's next write
    -- set before POST /pins, cleared only when no pin can have been made: while set, the
    -- next run first looks for the pin on the board (reconciliation).
    create_started_at timestamptz,
    -- start of the latest create: until it is older than the client's timeout, Pinterest
    -- may still be working on it, so "not found" proves nothing yet.
    last_create_at timestamptz,
    pin_id text UNIQUE,
    pin_url text,
    adopted boolean NOT NULL DEFAULT false,
    error_code text,
    error_message text,
    last_error_code text,
    last_error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE INDEX publications_state_idx ON publications (state) WHERE state IN ('in_flight', 'waiting');

CREATE TABLE publication_attempts (
    id bigserial PRIMARY KEY,
    post_id uuid NOT NULL REFERENCES publications (post_id),
    attempt integer NOT NULL,
    step text NOT NULL,                -- create | reconcile | media_upload | media_poll
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome text,                      -- ok | retry | failed | unknown | adopted | not_found
    detail text
);

CREATE INDEX publication_attempts_post_idx ON publication_attempts (post_id, id);

CREATE TABLE media_uploads (
    post_id uuid PRIMARY KEY REFERENCES publications (post_id),
    media_id text NOT NULL,
    status text NOT NULL,              -- uploaded | succeeded | failed
    polls integer NOT NULL DEFAULT 0,
    size_bytes bigint,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    checked_at timestamptz
);

CREATE TABLE account_pacing (
    account_id text PRIMARY KEY,
    next_slot timestamptz NOT NULL
);
