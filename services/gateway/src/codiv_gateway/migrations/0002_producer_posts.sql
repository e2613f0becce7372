-- Posts from internal producers (issue: internal producers): a rejected submission is kept
-- as a failed post even when its profile does not exist, and every post records its source.
ALTER TABLE posts ALTER COLUMN profile_id DROP NOT NULL;
ALTER TABLE posts ADD COLUMN source text NOT NULL DEFAULT 'api';
