-- Finished jobs (released, cancelled) are purged after SCHEDULER_JOB_RETENTION_DAYS; this
-- index keeps that purge from scanning the pending jobs.
CREATE INDEX jobs_finished_updated_at ON jobs (updated_at) WHERE state IN ('released', 'cancelled');
