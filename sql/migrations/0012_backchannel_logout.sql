-- 0012: OpenID Connect Back-Channel Logout 1.0 (issue 14, item 1): the outbox of logout tokens.
--
-- When a session ends (auth.session.revoked_at goes from NULL to a time), every client that
-- received tokens in it (a token family of the session: code, refresh, password, implicit or
-- hybrid grants all open one) and has a backchannel_logout_uri gets one row here, in the same
-- transaction. A trigger on auth.session does it (sql/functions/100_backchannel_logout.sql):
-- every path that ends a session, present or future, a daemon function or an operator's UPDATE,
-- goes through it. Each gateway process sends the rows (a lease, FOR UPDATE SKIP LOCKED, retries
-- with a backoff) as mail.outbox is sent. The logout token itself is signed at send time and
-- never stored; the client's URI is read from the configuration at send time too.
--
-- Which clients received tokens needs nothing new: auth.token_family already records
-- (session_id, client_id) for every grant that issues tokens.

CREATE TABLE IF NOT EXISTS auth.backchannel_logout (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- No foreign key: housekeeping may delete the session before the row is over.
    session_id      uuid NOT NULL,
    user_id         uuid NOT NULL,
    client_id       text NOT NULL,
    reason          text,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'skipped')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT daemon.now(),
    queued_at       timestamptz NOT NULL DEFAULT daemon.now(),
    created_at      timestamptz NOT NULL DEFAULT daemon.now(),
    claim           uuid,
    claimed_at      timestamptz,
    lease_until     timestamptz,
    sent_at         timestamptz,
    failed_at       timestamptz,
    CONSTRAINT backchannel_logout_once UNIQUE (session_id, client_id),
    CONSTRAINT backchannel_logout_sending_is_leased
        CHECK (state <> 'sending' OR (claim IS NOT NULL AND lease_until IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS backchannel_logout_due
    ON auth.backchannel_logout (next_attempt_at) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS backchannel_logout_leases
    ON auth.backchannel_logout (lease_until) WHERE state = 'sending';
CREATE INDEX IF NOT EXISTS backchannel_logout_over
    ON auth.backchannel_logout (created_at) WHERE state IN ('sent', 'failed', 'skipped');
COMMENT ON TABLE auth.backchannel_logout IS
    'OIDC Back-Channel Logout outbox: one row per (ended session, client that received tokens in '
    'it and had a backchannel_logout_uri), queued by the trigger on auth.session in the '
    'transaction that ended the session; queued, sending (leased until lease_until), sent, failed '
    '(given up after backchannel_logout.max_age) or skipped (no URI any more at send time)';
COMMENT ON COLUMN auth.backchannel_logout.claim IS
    'Names the current lease; backchannel_sent/failed/skipped/release carry it, so a sender whose '
    'lease was taken over changes nothing';
COMMENT ON COLUMN auth.backchannel_logout.user_id IS 'The logout token''s sub';
COMMENT ON COLUMN auth.backchannel_logout.session_id IS 'The logout token''s sid';
