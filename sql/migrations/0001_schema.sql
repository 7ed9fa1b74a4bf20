-- 0001: the base schema. Forward-only: never edit this file once released; add 0002_... instead.
--
-- Schemas: oauth2 (clients, signing keys), auth (users, sessions, codes, refresh tokens),
-- audit (events), daemon (the functions the gateway calls; see sql/functions/).

CREATE SCHEMA IF NOT EXISTS oauth2;
CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS audit;
CREATE SCHEMA IF NOT EXISTS daemon;

COMMENT ON SCHEMA oauth2 IS 'OAuth 2.0 clients and the gateway''s own signing keys';
COMMENT ON SCHEMA auth IS 'Users, sessions, authorization codes and refresh tokens';
COMMENT ON SCHEMA audit IS 'Security-relevant events';
COMMENT ON SCHEMA daemon IS 'Functions the gateway calls; the only way it changes auth state';

CREATE TABLE oauth2.client (
    client_id          text PRIMARY KEY,
    provider           text NOT NULL DEFAULT 'default',
    app                text NOT NULL,
    secret_hash        text,
    public             boolean NOT NULL,
    grant_types        text[] NOT NULL DEFAULT '{}',
    redirect_uris      text[] NOT NULL DEFAULT '{}',
    javascript_origins text[] NOT NULL DEFAULT '{}',
    scopes             text[] NOT NULL DEFAULT '{}',
    settings           jsonb NOT NULL DEFAULT '{}',
    enabled            boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT client_secret_matches_type CHECK (public = (secret_hash IS NULL))
);
COMMENT ON TABLE oauth2.client IS
    'Clients synchronised from conf/oauth2/default.json at start-up; secret_hash is argon2id, never the secret';

CREATE TABLE oauth2.signing_key (
    kid                text PRIMARY KEY,
    alg                text NOT NULL CHECK (alg IN ('RS256', 'ES256')),
    public_jwk         jsonb NOT NULL,
    private_key_sealed text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    activated_at       timestamptz NOT NULL DEFAULT now(),
    retired_at         timestamptz
);
COMMENT ON TABLE oauth2.signing_key IS
    'The gateway''s JWT signing keys; private keys are sealed (AES-GCM) with the master key, which is not stored here';

CREATE TABLE auth.users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username            text NOT NULL CHECK (length(username) BETWEEN 1 AND 128),
    email               text CHECK (email IS NULL OR length(email) BETWEEN 3 AND 320),
    name                text CHECK (name IS NULL OR length(name) <= 256),
    password_hash       text NOT NULL,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    locked              boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON auth.users (lower(username));
CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email)) WHERE email IS NOT NULL;
COMMENT ON TABLE auth.users IS 'Resource owners; password_hash is argon2id';

CREATE TABLE auth.session (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid REFERENCES auth.users (id) ON DELETE CASCADE,
    client_id      text NOT NULL REFERENCES oauth2.client (client_id),
    kind           text NOT NULL CHECK (kind IN ('browser', 'token', 'service')),
    auth_time      timestamptz NOT NULL DEFAULT now(),
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    ip             inet,
    user_agent     text
);
CREATE INDEX session_user_idx ON auth.session (user_id) WHERE revoked_at IS NULL;
COMMENT ON TABLE auth.session IS
    'A sign-in: browser SSO (SID cookie), a token session (password, code) or a service session';

CREATE TABLE auth.code (
    code_hash             bytea PRIMARY KEY,
    client_id             text NOT NULL REFERENCES oauth2.client (client_id),
    user_id               uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    session_id            uuid NOT NULL REFERENCES auth.session (id) ON DELETE CASCADE,
    redirect_uri          text,
    scope                 text[] NOT NULL DEFAULT '{}',
    nonce                 text,
    code_challenge        text,
    code_challenge_method text CHECK (code_challenge_method IS NULL OR code_challenge_method = 'S256'),
    offline               boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now(),
    expires_at            timestamptz NOT NULL,
    used_at               timestamptz
);
COMMENT ON TABLE auth.code IS 'Authorization codes, stored as SHA-256 hashes; single use';

CREATE TABLE auth.token_family (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id       uuid NOT NULL REFERENCES auth.session (id) ON DELETE CASCADE,
    client_id        text NOT NULL REFERENCES oauth2.client (client_id),
    user_id          uuid REFERENCES auth.users (id) ON DELETE CASCADE,
    scope            text[] NOT NULL DEFAULT '{}',
    origin           text NOT NULL,
    code_hash        bytea,
    generation       integer NOT NULL DEFAULT 0,
    successor_sealed text,
    successor_until  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    revoked_at       timestamptz,
    revoked_reason   text
);
CREATE INDEX token_family_session_idx ON auth.token_family (session_id);
CREATE INDEX token_family_code_idx ON auth.token_family (code_hash) WHERE code_hash IS NOT NULL;
COMMENT ON TABLE auth.token_family IS
    'One grant: the chain of rotating refresh tokens issued from one code, password login or exchange. '
    'successor_sealed holds the live refresh token sealed with the master key, only until successor_until '
    '(the refresh grace), so a concurrent refresh with the superseded token gets the same successor';

CREATE TABLE auth.refresh_token (
    token_hash    bytea PRIMARY KEY,
    family_id     uuid NOT NULL REFERENCES auth.token_family (id) ON DELETE CASCADE,
    generation    integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    superseded_at timestamptz,
    UNIQUE (family_id, generation)
);
COMMENT ON TABLE auth.refresh_token IS 'Refresh tokens, stored as SHA-256 hashes only';

CREATE TABLE audit.event (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    kind       text NOT NULL,
    user_id    uuid,
    client_id  text,
    session_id uuid,
    ip         inet,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX event_at_idx ON audit.event (at);
COMMENT ON TABLE audit.event IS 'Security events (sign-in, failures, revocations, replays); never secrets';
