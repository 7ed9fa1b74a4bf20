-- Organisations, memberships and invitations (migration 0009). Every change is one function
-- in one transaction, audited with its actor ('cli', 'client:<id>' or 'user:<uuid>').
--
-- An invitation's life: daemon.org_invite (pending; inviting the same email again replaces
-- it) -> daemon.invitation_register (no account yet: the account is created with the
-- invitation's email, verified by it) or daemon.invitation_accept (an account with that
-- email) -> used. Or revoked (daemon.org_revoke_invite), or expired, or its organisation
-- removed. Redeeming locks the invitation row: of two browsers redeeming one link at once,
-- exactly one wins; the other learns it was used.

CREATE OR REPLACE FUNCTION daemon.org_live(p_alias text) RETURNS auth.organization
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o auth.organization;
BEGIN
    SELECT * INTO o FROM auth.organization WHERE alias = p_alias AND removed_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such organisation' USING ERRCODE = 'GO002';
    END IF;
    RETURN o;
END;
$$;
COMMENT ON FUNCTION daemon.org_live(text) IS 'The live organisation by alias, or GO002';

CREATE OR REPLACE FUNCTION daemon.org_add(
    p_alias text, p_name text, p_domains text[], p_actor text
) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_alias IS NULL OR p_alias !~ '^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$' THEN
        RAISE EXCEPTION 'alias must be 2 to 63 lower-case letters, digits or hyphens'
            USING ERRCODE = 'GW002';
    END IF;
    IF p_name IS NULL OR length(btrim(p_name)) = 0 OR length(p_name) > 200 THEN
        RAISE EXCEPTION 'name must be 1 to 200 characters' USING ERRCODE = 'GW002';
    END IF;
    INSERT INTO auth.organization (alias, name, domains)
    VALUES (p_alias, btrim(p_name), coalesce(p_domains, '{}'))
    RETURNING id INTO v_id;
    PERFORM daemon.audit('org.add', NULL, NULL, NULL, NULL,
                         jsonb_build_object('org', p_alias, 'actor', p_actor));
    RETURN v_id;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'an organisation with this alias exists' USING ERRCODE = 'GO001';
END;
$$;
COMMENT ON FUNCTION daemon.org_add(text, text, text[], text) IS
    'Create an organisation. GO001 when the alias is taken, GW002 on bad input.';

CREATE OR REPLACE FUNCTION daemon.org_remove(p_alias text, p_actor text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o auth.organization := daemon.org_live(p_alias);
BEGIN
    UPDATE auth.organization SET removed_at = daemon.now(), updated_at = daemon.now()
    WHERE id = o.id;
    DELETE FROM auth.membership WHERE organization_id = o.id;
    PERFORM daemon.audit('org.remove', NULL, NULL, NULL, NULL,
                         jsonb_build_object('org', p_alias, 'actor', p_actor));
END;
$$;
COMMENT ON FUNCTION daemon.org_remove(text, text) IS
    'Remove an organisation: its members leave it; its invitations say it is gone';

DROP FUNCTION IF EXISTS daemon.org_list(uuid);  -- p_alias added
CREATE OR REPLACE FUNCTION daemon.org_list(p_admin uuid, p_alias text DEFAULT NULL)
RETURNS TABLE (alias text, name text, domains text[], members bigint, pending bigint,
               created_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.alias, o.name, o.domains,
           (SELECT count(*) FROM auth.membership m WHERE m.organization_id = o.id),
           (SELECT count(*) FROM auth.invitation i WHERE i.organization_id = o.id
              AND i.used_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > daemon.now()),
           o.created_at
    FROM auth.organization o
    WHERE o.removed_at IS NULL
      AND (p_alias IS NULL OR o.alias = p_alias)
      AND (p_admin IS NULL OR EXISTS (
          SELECT 1 FROM auth.membership a
          WHERE a.organization_id = o.id AND a.user_id = p_admin AND a.role = 'admin'))
    ORDER BY o.alias;
$$;
COMMENT ON FUNCTION daemon.org_list(uuid, text) IS
    'The live organisations with their counts (those p_admin administers, when given; the one '
    'with alias p_alias, when given)';

CREATE OR REPLACE FUNCTION daemon.org_members(p_alias text)
RETURNS TABLE (user_id uuid, username text, email text, name text, role text,
               joined_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o auth.organization := daemon.org_live(p_alias);
BEGIN
    RETURN QUERY
    SELECT u.id, u.username, u.email, u.name, m.role, m.created_at
    FROM auth.membership m JOIN auth.users u ON u.id = m.user_id
    WHERE m.organization_id = o.id ORDER BY lower(u.username);
END;
$$;
COMMENT ON FUNCTION daemon.org_members(text) IS 'The members of a live organisation (GO002)';

CREATE OR REPLACE FUNCTION daemon.org_invitations(p_alias text, p_all boolean)
RETURNS TABLE (id uuid, email text, role text, client_id text, invited_by text,
               created_at timestamptz, expires_at timestamptz, state text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o auth.organization := daemon.org_live(p_alias);
BEGIN
    RETURN QUERY
    SELECT i.id, i.email, i.role, i.client_id, i.invited_by, i.created_at, i.expires_at,
           CASE WHEN i.used_at IS NOT NULL THEN 'used'
                WHEN i.revoked_at IS NOT NULL THEN 'revoked'
                WHEN i.expires_at <= daemon.now() THEN 'expired'
                ELSE 'pending' END
    FROM auth.invitation i
    WHERE i.organization_id = o.id
      AND (p_all OR (i.used_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > daemon.now()))
    ORDER BY i.created_at DESC;
END;
$$;
COMMENT ON FUNCTION daemon.org_invitations(text, boolean) IS
    'Invitations of a live organisation: the pending ones, or all (GO002)';

CREATE OR REPLACE FUNCTION daemon.org_role(p_alias text, p_user_id uuid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.role FROM auth.membership m JOIN auth.organization o ON o.id = m.organization_id
    WHERE o.alias = p_alias AND o.removed_at IS NULL AND m.user_id = p_user_id;
$$;
COMMENT ON FUNCTION daemon.org_role(text, uuid) IS
    'The role of a user in a live organisation, or NULL';

DROP FUNCTION IF EXISTS daemon.org_invite(text, text, text, text, bytea, integer, text);
CREATE OR REPLACE FUNCTION daemon.org_invite(
    p_alias text, p_email text, p_role text, p_client_id text, p_token_hash bytea,
    p_ttl integer, p_actor text,
    p_mail_id uuid, p_mail_recipient text, p_mail_content_sealed text
) RETURNS TABLE (id uuid, expires_at timestamptz, replaced boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o auth.organization := daemon.org_live(p_alias);
    v_replaced integer;
    v_id uuid;
    v_expires timestamptz := daemon.now() + make_interval(secs => p_ttl);
BEGIN
    IF p_role IS NULL OR p_role NOT IN ('member', 'admin') THEN
        RAISE EXCEPTION 'role must be member or admin' USING ERRCODE = 'GW002';
    END IF;
    -- One invitation of this organisation at a time: two invitations of one email at once
    -- replace each other in turn instead of colliding on the pending index.
    PERFORM 1 FROM auth.organization WHERE auth.organization.id = o.id FOR UPDATE;
    IF p_email IS NULL OR length(p_email) NOT BETWEEN 3 AND 320 OR position('@' IN p_email) = 0 THEN
        RAISE EXCEPTION 'not an email address' USING ERRCODE = 'GW002';
    END IF;
    IF EXISTS (SELECT 1 FROM auth.membership m JOIN auth.users u ON u.id = m.user_id
               WHERE m.organization_id = o.id AND lower(u.email) = lower(p_email)) THEN
        RAISE EXCEPTION 'already a member' USING ERRCODE = 'GO003';
    END IF;
    UPDATE auth.invitation i SET revoked_at = daemon.now()
    WHERE i.organization_id = o.id AND lower(i.email) = lower(p_email)
      AND i.used_at IS NULL AND i.revoked_at IS NULL;
    GET DIAGNOSTICS v_replaced = ROW_COUNT;
    INSERT INTO auth.invitation (organization_id, email, role, client_id, token_hash,
                                 invited_by, expires_at)
    VALUES (o.id, p_email, p_role, p_client_id, p_token_hash, p_actor, v_expires)
    RETURNING auth.invitation.id INTO v_id;
    PERFORM daemon.audit('org.invite', NULL, p_client_id, NULL, NULL,
                         jsonb_build_object('org', p_alias, 'email', p_email, 'role', p_role,
                                            'actor', p_actor, 'invitation', v_id));
    -- The email with the link, queued in the same transaction: no invitation without its
    -- message, no message for an invitation that was not made.
    IF p_mail_id IS NOT NULL THEN
        PERFORM daemon.mail_enqueue(p_mail_id, 'invitation', p_mail_recipient,
                                    p_mail_content_sealed);
    END IF;
    RETURN QUERY SELECT v_id, v_expires, v_replaced > 0;
END;
$$;
COMMENT ON FUNCTION daemon.org_invite(text, text, text, text, bytea, integer, text, uuid, text, text) IS
    'Invite an email to an organisation (a pending invitation for it is replaced), queueing its '
    'email (sealed by the caller) in the same transaction. GO002, GO003 (already a member), GW002.';

CREATE OR REPLACE FUNCTION daemon.org_revoke_invite(p_alias text, p_email text, p_actor text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o auth.organization := daemon.org_live(p_alias);
    v_count integer;
BEGIN
    UPDATE auth.invitation i SET revoked_at = daemon.now()
    WHERE i.organization_id = o.id AND lower(i.email) = lower(p_email)
      AND i.used_at IS NULL AND i.revoked_at IS NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 THEN
        RAISE EXCEPTION 'no pending invitation for this email' USING ERRCODE = 'GO005';
    END IF;
    PERFORM daemon.audit('org.revoke_invite', NULL, NULL, NULL, NULL,
                         jsonb_build_object('org', p_alias, 'email', p_email, 'actor', p_actor));
    RETURN v_count;
END;
$$;
COMMENT ON FUNCTION daemon.org_revoke_invite(text, text, text) IS
    'Revoke the pending invitation of an email. GO002, GO005 (none pending).';

CREATE OR REPLACE FUNCTION daemon.org_remove_member(p_alias text, p_user text, p_actor text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o auth.organization := daemon.org_live(p_alias);
    v_user uuid;
BEGIN
    -- Among this organisation's members only: by id, else by user name, else by email (so no
    -- account elsewhere whose name looks like a member's id or email can be picked instead).
    SELECT u.id INTO v_user
    FROM auth.membership m JOIN auth.users u ON u.id = m.user_id
    WHERE m.organization_id = o.id
      AND (u.id::text = lower(p_user) OR lower(u.username) = lower(p_user)
           OR lower(u.email) = lower(p_user))
    ORDER BY (u.id::text = lower(p_user)) DESC, (lower(u.username) = lower(p_user)) DESC
    LIMIT 1;
    DELETE FROM auth.membership m WHERE m.organization_id = o.id AND m.user_id = v_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not a member' USING ERRCODE = 'GO004';
    END IF;
    PERFORM daemon.audit('org.remove_member', v_user, NULL, NULL, NULL,
                         jsonb_build_object('org', p_alias, 'actor', p_actor));
    RETURN v_user;
END;
$$;
COMMENT ON FUNCTION daemon.org_remove_member(text, text, text) IS
    'Remove a member (by user name, email or id). GO002, GO004 (not a member).';

CREATE OR REPLACE FUNCTION daemon.invitation_lookup(p_token_hash bytea)
RETURNS TABLE (state text, invitation_id uuid, alias text, organization_name text, email text,
               role text, client_id text, expires_at timestamptz, user_id uuid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN o.removed_at IS NOT NULL THEN 'organization_removed'
                WHEN i.used_at IS NOT NULL THEN 'used'
                WHEN i.revoked_at IS NOT NULL THEN 'revoked'
                WHEN i.expires_at <= daemon.now() THEN 'expired'
                ELSE 'pending' END,
           i.id, o.alias, o.name, i.email, i.role, i.client_id, i.expires_at,
           (SELECT u.id FROM auth.users u
            WHERE lower(u.email) = lower(i.email) AND NOT u.pending_verification)
    FROM auth.invitation i JOIN auth.organization o ON o.id = i.organization_id
    WHERE i.token_hash = p_token_hash;
$$;
COMMENT ON FUNCTION daemon.invitation_lookup(bytea) IS
    'An invitation by its token''s hash: its state, organisation, email, and the account with '
    'that email if there is one, a self-registered one still pending verification not counted '
    '(no row: an unknown token)';

CREATE OR REPLACE FUNCTION daemon.invitation_claim(p_token_hash bytea)
RETURNS auth.invitation
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i auth.invitation;
    v_removed timestamptz;
BEGIN
    SELECT * INTO i FROM auth.invitation WHERE token_hash = p_token_hash FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown invitation' USING ERRCODE = 'GI001';
    END IF;
    SELECT removed_at INTO v_removed FROM auth.organization WHERE id = i.organization_id;
    IF v_removed IS NOT NULL THEN
        RAISE EXCEPTION 'the organisation was removed' USING ERRCODE = 'GI005';
    ELSIF i.used_at IS NOT NULL THEN
        RAISE EXCEPTION 'the invitation was used' USING ERRCODE = 'GI003';
    ELSIF i.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'the invitation was revoked' USING ERRCODE = 'GI004';
    ELSIF i.expires_at <= daemon.now() THEN
        RAISE EXCEPTION 'the invitation has expired' USING ERRCODE = 'GI002';
    END IF;
    RETURN i;
END;
$$;
COMMENT ON FUNCTION daemon.invitation_claim(bytea) IS
    'Lock a pending invitation for redemption, or say why it cannot be (GI001-GI005)';

CREATE OR REPLACE FUNCTION daemon.invitation_register(
    p_token_hash bytea, p_username text, p_name text, p_password_hash text
) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i auth.invitation := daemon.invitation_claim(p_token_hash);
    v_user uuid;
    v_pending uuid;
BEGIN
    -- A self-registered account of the email that was never verified gives way: the invitation
    -- link reached that mailbox, as the verification link would have (095_accounts.sql).
    DELETE FROM auth.users u WHERE lower(u.email) = lower(i.email) AND u.pending_verification
    RETURNING u.id INTO v_pending;
    IF v_pending IS NOT NULL THEN
        PERFORM daemon.audit('account.pending_removed', NULL, i.client_id, NULL, NULL,
                             jsonb_build_object('user', v_pending, 'invitation', i.id));
    END IF;
    IF EXISTS (SELECT 1 FROM auth.users u WHERE lower(u.email) = lower(i.email)) THEN
        RAISE EXCEPTION 'an account with this email exists' USING ERRCODE = 'GI006';
    END IF;
    v_user := daemon.user_add(p_username, p_password_hash, i.email, p_name);
    UPDATE auth.users SET email_verified = true WHERE id = v_user;
    INSERT INTO auth.membership (organization_id, user_id, role)
    VALUES (i.organization_id, v_user, i.role);
    UPDATE auth.invitation SET used_at = daemon.now(), used_by = v_user WHERE id = i.id;
    PERFORM daemon.audit('org.join', v_user, i.client_id, NULL, NULL,
                         jsonb_build_object('invitation', i.id, 'role', i.role,
                                            'registered', true));
    RETURN v_user;
END;
$$;
COMMENT ON FUNCTION daemon.invitation_register(bytea, text, text, text) IS
    'Redeem an invitation by registering: the account (email verified), the membership, the '
    'invitation used, in one transaction. GI001-GI006, GW001, GW002.';

CREATE OR REPLACE FUNCTION daemon.invitation_accept(p_token_hash bytea, p_user_id uuid)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i auth.invitation := daemon.invitation_claim(p_token_hash);
    v_email text;
BEGIN
    SELECT email INTO v_email FROM auth.users WHERE id = p_user_id AND NOT locked;
    IF v_email IS NULL OR lower(v_email) <> lower(i.email) THEN
        RAISE EXCEPTION 'the invitation is for another email' USING ERRCODE = 'GI007';
    END IF;
    INSERT INTO auth.membership (organization_id, user_id, role)
    VALUES (i.organization_id, p_user_id, i.role)
    ON CONFLICT (organization_id, user_id) DO NOTHING;
    UPDATE auth.users SET email_verified = true WHERE id = p_user_id;
    UPDATE auth.invitation SET used_at = daemon.now(), used_by = p_user_id WHERE id = i.id;
    PERFORM daemon.audit('org.join', p_user_id, i.client_id, NULL, NULL,
                         jsonb_build_object('invitation', i.id, 'role', i.role,
                                            'registered', false));
    RETURN (SELECT alias FROM auth.organization WHERE id = i.organization_id);
END;
$$;
COMMENT ON FUNCTION daemon.invitation_accept(bytea, uuid) IS
    'Redeem an invitation with an existing account whose email it names: the membership and '
    'the invitation used, in one transaction. GI001-GI005, GI007.';

CREATE OR REPLACE FUNCTION daemon.user_organizations(p_user_id uuid) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(o.alias ORDER BY o.alias), '{}')
    FROM auth.membership m JOIN auth.organization o ON o.id = m.organization_id
    WHERE m.user_id = p_user_id AND o.removed_at IS NULL;
$$;
COMMENT ON FUNCTION daemon.user_organizations(uuid) IS
    'The aliases of the organisations a user belongs to (the "organization" claim)';

-- The "organization" claim of user tokens when the scope asks for it (Keycloak 26): read in the
-- grant's own statement (daemon.refresh_token), so a refresh stays one round trip.
CREATE OR REPLACE FUNCTION daemon.organizations_claim(p_user_id uuid, p_scope text[])
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_user_id IS NOT NULL AND 'organization' = ANY (p_scope)
                THEN daemon.user_organizations(p_user_id) END;
$$;
COMMENT ON FUNCTION daemon.organizations_claim(uuid, text[]) IS
    'The user''s organisation aliases when p_scope has "organization", else NULL';

