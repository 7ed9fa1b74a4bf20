-- Sessions and sign-in. A session is one sign-in (browser SSO through the SID cookie, or a token
-- session of the password grant, or a service session of client_credentials); a token family is one
-- grant inside it: the chain of rotating refresh tokens issued to one client.

DROP FUNCTION IF EXISTS daemon.user_lookup(text);
CREATE FUNCTION daemon.user_lookup(p_login text)
RETURNS TABLE (user_id uuid, username text, email text, name text, password_hash text, locked boolean,
               password_changed_at timestamptz, email_verified boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT id, username, email, name, password_hash, locked OR pending_verification,
           password_changed_at, email_verified
    FROM auth.users
    WHERE lower(username) = lower(p_login) OR (position('@' IN p_login) > 0 AND lower(email) = lower(p_login))
    ORDER BY lower(username) = lower(p_login) DESC
    LIMIT 1;
$$;
COMMENT ON FUNCTION daemon.user_lookup(text) IS
    'The account a login name (user name, or email) refers to; locked is also true for a '
    'self-registered account whose email is not verified yet. The password is checked by the caller, '
    'who passes password_changed_at on to daemon.login / daemon.session_open';

-- Its signature changed; the files are applied again at every change, so drop what exists.
DROP FUNCTION IF EXISTS daemon.login(uuid, text, text, text[], text, bytea, integer, integer, inet, text, uuid, text[], bytea);
DROP FUNCTION IF EXISTS daemon.login(uuid, text, text, text[], text, bytea, integer, integer, inet, text, uuid, text[], bytea, timestamptz);
DROP FUNCTION IF EXISTS daemon.login(uuid, text, text, text[], text, bytea, integer, integer, inet, text, uuid, text[], bytea, timestamptz, text[]);
CREATE FUNCTION daemon.login(
    p_user_id uuid, p_client_id text, p_kind text, p_scope text[], p_origin text,
    p_refresh_hash bytea, p_session_ttl integer, p_refresh_ttl integer,
    p_ip inet, p_user_agent text, p_session_id uuid DEFAULT NULL, p_clear text[] DEFAULT '{}',
    p_secret_hash bytea DEFAULT NULL, p_password_changed_at timestamptz DEFAULT NULL,
    p_guard text[] DEFAULT NULL
) RETURNS TABLE (session_id uuid, family_id uuid, auth_time timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_session auth.session%ROWTYPE;
BEGIN
    -- The client's lock (SECURITY-CHECKLIST item 141) before anything else: GT001 (issue 13).
    IF p_guard IS NOT NULL THEN
        PERFORM daemon.throttle_guard(p_guard);
    END IF;
    PERFORM daemon.audit_context(coalesce('user:' || p_user_id, 'client:' || p_client_id), p_ip,
                                 p_user_agent);
    PERFORM 1 FROM oauth2.client c WHERE c.client_id = p_client_id AND c.enabled;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown client' USING ERRCODE = 'GS006';
    END IF;
    IF p_user_id IS NOT NULL THEN
        -- FOR SHARE: a concurrent daemon.user_update (new password, lock) either committed first
        -- and is seen here, or waits for this sign-in and then ends the session it opens. The
        -- password the caller verified must still be the user's.
        PERFORM 1 FROM auth.users u WHERE u.id = p_user_id AND NOT u.locked
            AND NOT u.pending_verification
            AND (p_password_changed_at IS NULL OR u.password_changed_at = p_password_changed_at)
        FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the account cannot sign in' USING ERRCODE = 'GS003';
        END IF;
    END IF;
    IF p_session_id IS NOT NULL THEN
        SELECT * INTO v_session FROM auth.session s
        WHERE s.id = p_session_id AND s.revoked_at IS NULL AND s.expires_at > daemon.now()
          AND s.user_id IS NOT DISTINCT FROM p_user_id
        FOR UPDATE;
    END IF;
    IF v_session.id IS NULL THEN
        INSERT INTO auth.session (user_id, client_id, kind, expires_at, ip, user_agent, secret_hash)
        VALUES (p_user_id, p_client_id, p_kind, daemon.now() + make_interval(secs => p_session_ttl),
                p_ip, left(p_user_agent, 512), p_secret_hash)
        RETURNING * INTO v_session;
    ELSE
        UPDATE auth.session SET last_seen_at = daemon.now() WHERE id = v_session.id;
    END IF;

    INSERT INTO auth.token_family (session_id, client_id, user_id, scope, origin, expires_at)
    VALUES (v_session.id, p_client_id, p_user_id, coalesce(p_scope, '{}'), p_origin, v_session.expires_at)
    RETURNING id INTO family_id;
    IF p_refresh_hash IS NOT NULL THEN
        INSERT INTO auth.refresh_token (token_hash, family_id, generation, expires_at)
        VALUES (p_refresh_hash, family_id, 0,
                least(daemon.now() + make_interval(secs => p_refresh_ttl), v_session.expires_at));
    END IF;
    IF array_length(p_clear, 1) > 0 THEN
        DELETE FROM auth.throttle WHERE key = ANY (p_clear);
    END IF;
    PERFORM daemon.audit('login', p_user_id, p_client_id, v_session.id, p_ip,
                         jsonb_build_object('origin', p_origin));
    session_id := v_session.id;
    auth_time := v_session.auth_time;
    RETURN NEXT;
END;
$$;
COMMENT ON FUNCTION daemon.login(uuid, text, text, text[], text, bytea, integer, integer, inet, text, uuid, text[], bytea, timestamptz, text[]) IS
    'Sign-in after the caller verified the credentials (refused with GT001 first when a p_guard '
    'throttle key is locked): opens a session (or reuses p_session_id when it '
    'is live and belongs to the user), opens a token family with its first refresh token (when '
    'p_refresh_hash is given) and clears the throttle keys p_clear. Raises OA002 for a disabled '
    'client and OA001 for a locked account or a password changed since p_password_changed_at.';

DROP FUNCTION IF EXISTS daemon.session_open(uuid, text, integer, inet, text, text[]);
DROP FUNCTION IF EXISTS daemon.session_open(uuid, text, integer, inet, text, text[], uuid);
DROP FUNCTION IF EXISTS daemon.session_open(uuid, text, integer, inet, text, text[], uuid, timestamptz);
CREATE FUNCTION daemon.session_open(
    p_user_id uuid, p_client_id text, p_ttl integer, p_ip inet, p_user_agent text,
    p_clear text[] DEFAULT '{}', p_session_id uuid DEFAULT NULL,
    p_password_changed_at timestamptz DEFAULT NULL
) RETURNS TABLE (session_id uuid, auth_time timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM daemon.audit_context('user:' || p_user_id, p_ip, p_user_agent);
    -- As in daemon.login: no sign-in slips past a concurrent new password or lock.
    PERFORM 1 FROM auth.users u WHERE u.id = p_user_id AND NOT u.locked
        AND NOT u.pending_verification
        AND (p_password_changed_at IS NULL OR u.password_changed_at = p_password_changed_at)
    FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the account cannot sign in' USING ERRCODE = 'GS003';
    END IF;
    IF p_session_id IS NOT NULL THEN
        -- The same user signing in again (prompt=login, max_age) keeps the browser's session,
        -- so the tokens of that session (a SPA's cookies) stay valid; only auth_time moves.
        UPDATE auth.session s SET auth_time = daemon.now(), last_seen_at = daemon.now()
        WHERE s.id = p_session_id AND s.user_id = p_user_id AND s.kind = 'browser'
          AND s.revoked_at IS NULL AND s.expires_at > daemon.now()
        RETURNING s.id, s.auth_time INTO session_id, auth_time;
        IF FOUND THEN
            PERFORM daemon.audit('login', p_user_id, p_client_id, session_id, p_ip,
                                 jsonb_build_object('origin', 'form', 'again', true));
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    INSERT INTO auth.session (user_id, client_id, kind, expires_at, ip, user_agent)
    VALUES (p_user_id, p_client_id, 'browser', daemon.now() + make_interval(secs => p_ttl), p_ip,
            left(p_user_agent, 512))
    RETURNING id, auth.session.auth_time INTO session_id, auth_time;
    IF array_length(p_clear, 1) > 0 THEN
        DELETE FROM auth.throttle WHERE key = ANY (p_clear);
    END IF;
    PERFORM daemon.audit('login', p_user_id, p_client_id, session_id, p_ip,
                         jsonb_build_object('origin', 'form'));
    RETURN NEXT;
END;
$$;
COMMENT ON FUNCTION daemon.session_open(uuid, text, integer, inet, text, text[], uuid, timestamptz) IS
    'A browser session after a sign-in on the login page (the caller verified the password, whose '
    'password_changed_at must still hold) or with an external provider; p_session_id, when live '
    'and the same user''s, is renewed instead of replaced';

CREATE OR REPLACE FUNCTION daemon.session_by_secret(p_secret_hash bytea)
RETURNS TABLE (session_id uuid, user_id uuid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.id, s.user_id FROM auth.session s JOIN auth.users u ON u.id = s.user_id
    WHERE s.secret_hash = p_secret_hash AND s.revoked_at IS NULL AND s.expires_at > daemon.now()
      AND NOT u.locked;
$$;
COMMENT ON FUNCTION daemon.session_by_secret(bytea) IS 'The live session a session secret belongs to';

DROP FUNCTION IF EXISTS daemon.session_get(uuid);  -- email_verified added to its result
CREATE FUNCTION daemon.session_get(p_session_id uuid)
RETURNS TABLE (session_id uuid, user_id uuid, username text, email text, name text,
               auth_time timestamptz, expires_at timestamptz, email_verified boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.id, u.id, u.username, u.email, u.name, s.auth_time, s.expires_at, u.email_verified
    FROM auth.session s JOIN auth.users u ON u.id = s.user_id
    WHERE s.id = p_session_id AND s.revoked_at IS NULL AND s.expires_at > daemon.now()
      AND NOT u.locked AND s.kind = 'browser';
$$;
COMMENT ON FUNCTION daemon.session_get(uuid) IS 'A live browser session and its user, or nothing';

CREATE OR REPLACE FUNCTION daemon.session_revoke(p_session_id uuid, p_reason text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user uuid;
BEGIN
    UPDATE auth.session SET revoked_at = daemon.now(), revoked_reason = p_reason
    WHERE id = p_session_id AND revoked_at IS NULL
    RETURNING user_id INTO v_user;
    IF NOT FOUND THEN
        -- A session of the token handler at an external provider (migration 0008)?
        UPDATE auth.external_session SET ended_at = daemon.now(), ended_reason = p_reason
        WHERE id = p_session_id AND ended_at IS NULL;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
        PERFORM daemon.audit('session.revoke', NULL, NULL, p_session_id, NULL,
                             jsonb_build_object('reason', p_reason, 'external', true));
        PERFORM pg_notify('gateway_revocation', 's:' || p_session_id);
        RETURN true;
    END IF;
    UPDATE auth.token_family SET revoked_at = daemon.now(), revoked_reason = p_reason, successor_sealed = NULL
    WHERE session_id = p_session_id AND revoked_at IS NULL;
    PERFORM daemon.audit('session.revoke', v_user, NULL, p_session_id, NULL,
                         jsonb_build_object('reason', p_reason));
    PERFORM pg_notify('gateway_revocation', 's:' || p_session_id);
    RETURN true;
END;
$$;
COMMENT ON FUNCTION daemon.session_revoke(uuid, text) IS
    'End a session and every token family in it (logout, replay). False when it was already over.';

CREATE OR REPLACE FUNCTION daemon.consent_get(p_user_id uuid, p_client_id text)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT scope FROM auth.consent WHERE user_id = p_user_id AND client_id = p_client_id), '{}');
$$;
COMMENT ON FUNCTION daemon.consent_get(uuid, text) IS 'The scopes a user has consented to give a client';

CREATE OR REPLACE FUNCTION daemon.consent_grant(p_user_id uuid, p_client_id text, p_scope text[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO auth.consent (user_id, client_id, scope) VALUES (p_user_id, p_client_id, p_scope)
    ON CONFLICT (user_id, client_id) DO UPDATE
        SET scope = ARRAY(SELECT DISTINCT unnest(auth.consent.scope || excluded.scope)),
            granted_at = daemon.now();
$$;
COMMENT ON FUNCTION daemon.consent_grant(uuid, text, text[]) IS 'Record consent to a scope (merged with earlier consent)';
