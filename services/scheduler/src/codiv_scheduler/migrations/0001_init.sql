-- scheduler schema: one row per post, from its first event on (tombstones included).
--
-- state:
--   awaiting_request  a reschedule arrived before its request (out of order); never released
--   pending           waiting for due_at
--   released          post.due emitted (through the outbox) for `attempt`
--   cancelled         never released; a cancel that arrived before its request is a tombstone
--                     (content NULL) so that the late request is not scheduled
CREATE TABLE jobs (
    post_id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    state text NOT NULL
        CHECK (state IN ('awaiting_request', 'pending', 'released', 'cancelled')),
    due_at timestamptz,
    attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    content jsonb,
    -- ordering of schedule changes: (revision, changed_at) of the last applied change
    revision integer NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL,
    correlation_id uuid,
    causation_id uuid,
    released_at timestamptz,
    released_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (state NOT IN ('pending', 'released') OR (due_at IS NOT NULL AND content IS NOT NULL))
);

-- The release loop's only access paths: the earliest pending job and the due batch.
CREATE INDEX jobs_pending_due_at ON jobs (due_at) WHERE state = 'pending';
