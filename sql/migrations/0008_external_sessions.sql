-- 0008: sessions of the token handler in front of an external OpenID provider, in the database.
--
-- Until now such a session lived only in the browser's sealed cookies: a sign-out was enforced
-- by the process that saw it, and a session had no absolute end. Now each one has a row: a
-- sign-out (or a replayed refresh token) ends it for every process and replica (NOTIFY, and
-- daemon.revocations_since after a restart), refreshes stop at its expires_at, and it is
-- refused once ended.
--
-- external_refresh.rotated: whether the provider rotated the refresh token in that refresh.
-- Providers that keep one refresh token for the whole session (Google by default, Okta and
-- Auth0 without rotation) present the same token again at the next refresh: that is no replay.

CREATE TABLE auth.external_session (
    id           uuid PRIMARY KEY,
    provider     text NOT NULL,
    subject      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT daemon.now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    ended_reason text
);
CREATE INDEX external_session_ended_idx ON auth.external_session (ended_at)
    WHERE ended_at IS NOT NULL;
COMMENT ON TABLE auth.external_session IS
    'Sessions of the token handler at an external provider (login.provider): the SID cookie''s '
    'id, its absolute end, and when and why it ended';

ALTER TABLE auth.external_refresh ADD COLUMN rotated boolean NOT NULL DEFAULT true;
