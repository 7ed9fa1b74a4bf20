-- 0006: one clock for the gateway and its database.
--
-- Every expiry the functions decide (codes, sessions, refresh tokens, throttles, pending
-- exchanges) reads daemon.now(), not now(): the transaction's time plus the offset the
-- application's clock carries. The offset is 0 in production, where the setting is never made;
-- a test moves the application's clock forward and the gateway sets gateway.clock_offset on
-- each connection it lends, so the database sees the same "now" as the code that called it,
-- and no test sleeps for an expiry.

CREATE FUNCTION daemon.now() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT now() + coalesce(nullif(current_setting('gateway.clock_offset', true), ''), '0')::interval
$$;
COMMENT ON FUNCTION daemon.now() IS
    'now(), moved by the application clock''s offset (the gateway.clock_offset setting, seconds; '
    'unset in production)';

ALTER TABLE oauth2.client ALTER COLUMN created_at SET DEFAULT daemon.now(),
                          ALTER COLUMN updated_at SET DEFAULT daemon.now();
ALTER TABLE oauth2.signing_key ALTER COLUMN created_at SET DEFAULT daemon.now(),
                               ALTER COLUMN activated_at SET DEFAULT daemon.now();
ALTER TABLE auth.users ALTER COLUMN password_changed_at SET DEFAULT daemon.now(),
                       ALTER COLUMN created_at SET DEFAULT daemon.now(),
                       ALTER COLUMN updated_at SET DEFAULT daemon.now();
ALTER TABLE auth.session ALTER COLUMN auth_time SET DEFAULT daemon.now(),
                         ALTER COLUMN created_at SET DEFAULT daemon.now(),
                         ALTER COLUMN last_seen_at SET DEFAULT daemon.now();
ALTER TABLE auth.code ALTER COLUMN created_at SET DEFAULT daemon.now();
ALTER TABLE auth.token_family ALTER COLUMN created_at SET DEFAULT daemon.now();
ALTER TABLE auth.refresh_token ALTER COLUMN created_at SET DEFAULT daemon.now();
ALTER TABLE audit.event ALTER COLUMN at SET DEFAULT daemon.now();
ALTER TABLE auth.consent ALTER COLUMN granted_at SET DEFAULT daemon.now();
ALTER TABLE auth.throttle ALTER COLUMN last_failure_at SET DEFAULT daemon.now();
ALTER TABLE auth.identity ALTER COLUMN created_at SET DEFAULT daemon.now(),
                          ALTER COLUMN last_login_at SET DEFAULT daemon.now();
