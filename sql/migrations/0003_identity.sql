-- 0003: accounts at external identity providers linked to local users (sign-in with a provider).

CREATE TABLE auth.identity (
    issuer        text NOT NULL CHECK (length(issuer) BETWEEN 1 AND 512),
    subject       text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    provider      text NOT NULL CHECK (length(provider) BETWEEN 1 AND 64),
    user_id       uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    email         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identity_user_idx ON auth.identity (user_id);
COMMENT ON TABLE auth.identity IS
    'An external provider''s account (its ID token''s iss and sub) linked to a local user. A link is '
    'made only when the user also signs in with the local password in the same flow, and is '
    'removed when the local password changes; provider is the conf/oauth2 file it came through';
