-- 0009: organisations, their members and invitations by email (issue 12, seed 002).
--
-- An organisation has an alias (unique among the live ones, URL-safe: it is what tokens carry
-- in the "organization" claim), a display name and optional email domains (shown to admins).
-- Removing one keeps its row (removed_at) so that its invitations can say what happened.
-- An invitation is bound to an organisation and an email, carries the role the person will
-- have and the client whose application invited them; its token is stored as a SHA-256 only.
-- At most one pending invitation per organisation and email: inviting again replaces it.

ALTER TABLE auth.users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

CREATE TABLE auth.organization (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    alias      text NOT NULL CHECK (alias ~ '^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    domains    text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT daemon.now(),
    updated_at timestamptz NOT NULL DEFAULT daemon.now(),
    removed_at timestamptz
);
CREATE UNIQUE INDEX organization_alias_key ON auth.organization (alias) WHERE removed_at IS NULL;
COMMENT ON TABLE auth.organization IS
    'Organisations (Keycloak 26''s shape): alias, name, email domains; removed ones are kept';

CREATE TABLE auth.membership (
    organization_id uuid NOT NULL REFERENCES auth.organization (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('member', 'admin')),
    created_at      timestamptz NOT NULL DEFAULT daemon.now(),
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX membership_user_idx ON auth.membership (user_id);
COMMENT ON TABLE auth.membership IS 'Who belongs to which organisation, as member or admin';

CREATE TABLE auth.invitation (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES auth.organization (id) ON DELETE CASCADE,
    email           text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    role            text NOT NULL CHECK (role IN ('member', 'admin')),
    client_id       text,
    token_hash      bytea NOT NULL UNIQUE,
    invited_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT daemon.now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    used_by         uuid REFERENCES auth.users (id) ON DELETE SET NULL,
    revoked_at      timestamptz
);
CREATE UNIQUE INDEX invitation_pending_key ON auth.invitation (organization_id, lower(email))
    WHERE used_at IS NULL AND revoked_at IS NULL;
COMMENT ON TABLE auth.invitation IS
    'Invitations by email to an organisation: single use, expiring, the token only as SHA-256';
