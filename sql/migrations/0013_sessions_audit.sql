-- 0013: sessions people can see and end, and an audit log people can read (issue 14, items 3
-- and 4). Numbered 0013 on purpose: 0012 belongs to back-channel logout, in progress elsewhere;
-- this file depends on nothing newer than 0011.
--
-- audit.event gains who did it (actor: 'cli', 'user:<uuid>', 'client:<id>', 'system') and the
-- browser's User-Agent; the client address was there already (ip). Filled by daemon.audit from
-- the arguments and from the transaction's audit context (daemon.audit_context), so every
-- function that already audits (and the ones nested in it, such as daemon.session_revoke)
-- records them without a change of signature.
--
-- "Last used" of a session: auth.session.last_seen_at, which the token issuance and refresh
-- functions already move (the proxy's hot path does no database I/O, so a request that only
-- uses a valid access token does not); no new column is needed.

ALTER TABLE audit.event ADD COLUMN IF NOT EXISTS actor text;
ALTER TABLE audit.event ADD COLUMN IF NOT EXISTS user_agent text;
COMMENT ON COLUMN audit.event.actor IS
    'Who caused the event: cli, user:<uuid>, client:<id>, system; NULL when unknown';
COMMENT ON COLUMN audit.event.user_agent IS 'The browser''s or client''s User-Agent (512 characters at most)';
COMMENT ON COLUMN audit.event.ip IS 'The client address (as the gateway resolved it from trusted proxies)';

-- `gateway audit --user NAME` and `--type TYPE`, newest first.
CREATE INDEX IF NOT EXISTS event_user_idx ON audit.event (user_id, id) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS event_kind_idx ON audit.event (kind, id);

-- The account page lists the user's sessions, live ones first.
CREATE INDEX IF NOT EXISTS session_user_all_idx ON auth.session (user_id, created_at);

-- The optional SIEM output (audit.log): how far the audit log has been written to the process
-- log. One row; created by the first daemon.audit_emit, at the newest event then.
CREATE TABLE IF NOT EXISTS audit.log_cursor (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT daemon.now()
);
COMMENT ON TABLE audit.log_cursor IS
    'The id of the last audit event written to the log (audit.log: true) by any gateway process';
