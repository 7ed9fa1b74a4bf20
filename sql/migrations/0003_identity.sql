-- 0003: accounts at external identity providers linked to local users (sign-in with a provider).

CREATE TABLE auth.identity (
    provider      text NOT NULL CHECK (length(provider) BETWEEN 1 AND 64),
    subject       text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    user_id       uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    email         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identity_user_idx ON auth.identity (user_id);
COMMENT ON TABLE auth.identity IS
    'The subject (sub) of an external provider''s ID token, linked to a local user on first sign-in '
    'by a verified email; later sign-ins follow the link, whatever the email has become';
