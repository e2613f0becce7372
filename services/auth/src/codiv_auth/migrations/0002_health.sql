-- Account health: the refresh-token expiry an account.token_expiring was last emitted for,
-- so the warning goes out once per refresh token (a new token has a new expiry).
ALTER TABLE accounts ADD COLUMN expiring_notified_for timestamptz;
