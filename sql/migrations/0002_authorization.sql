-- 0002: what the authorization server needs beyond the base schema.

CREATE TABLE auth.consent (
    user_id    uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    client_id  text NOT NULL REFERENCES oauth2.client (client_id),
    scope      text[] NOT NULL DEFAULT '{}',
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_id)
);
COMMENT ON TABLE auth.consent IS 'Scopes a user agreed to give a client that asks for consent';

CREATE TABLE auth.throttle (
    key             text PRIMARY KEY,
    failures        integer NOT NULL DEFAULT 0,
    last_failure_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz
);
COMMENT ON TABLE auth.throttle IS
    'Failed attempts per account, client address or client id (keys like acct:alice, ip:192.0.2.1); '
    'locked_until grows with every failure past the threshold';

CREATE TABLE auth.assertion (
    issuer     text NOT NULL,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (issuer, jti)
);
COMMENT ON TABLE auth.assertion IS 'JWT bearer assertions already used (RFC 7523 jti replay)';

ALTER TABLE auth.code ADD COLUMN auth_time timestamptz;
ALTER TABLE auth.session ADD COLUMN secret_hash bytea UNIQUE;
COMMENT ON COLUMN auth.session.secret_hash IS
    'SHA-256 of the session secret a password-grant response carries; presenting it signs in again';
ALTER TABLE auth.token_family ADD COLUMN nonce text;
