-- 0011: self-registration and account recovery (issue 12 item 5).
--
-- A self-registered account is pending until its email is verified: pending_verification is
-- true from daemon.account_register until daemon.account_verify (or a password reset through
-- the same mailbox). It is a separate flag, not email_verified: accounts made before this
-- migration (by an operator, `gateway user add`) keep email_verified = false and still sign
-- in, because nothing ever set pending_verification for them.
--
-- Account links (verify an email, reset a password) are single-use tokens: 256 random bits of
-- which only the SHA-256 is stored here, with their purpose, user, expiry and use.

ALTER TABLE auth.users ADD COLUMN pending_verification boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN auth.users.pending_verification IS
    'A self-registered account whose email is not verified yet: it cannot sign in';

CREATE TABLE auth.account_token (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    user_id     uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    continue_to text CHECK (continue_to IS NULL OR (length(continue_to) <= 4096
                                                    AND continue_to LIKE '/oauth2/authorize?%')),
    created_at  timestamptz NOT NULL DEFAULT daemon.now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX account_token_open ON auth.account_token (user_id, purpose) WHERE used_at IS NULL;
CREATE INDEX account_token_expiry ON auth.account_token (expires_at);
COMMENT ON TABLE auth.account_token IS
    'Single-use account links: verify_email (self-registration) and reset_password (recovery); '
    'only the SHA-256 of the token is kept. continue_to: the authorization request the person '
    'was signing in to, as a path of this gateway, offered again once the link is used';
