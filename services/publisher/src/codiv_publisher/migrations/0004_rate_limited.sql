-- 429s are counted apart from failures: a rate limit slows a post down, it does not use
-- up its failure budget (MAX_ATTEMPTS); MAX_RATE_LIMITED bounds how long it may wait.
ALTER TABLE publications ADD COLUMN rate_limited integer NOT NULL DEFAULT 0;
