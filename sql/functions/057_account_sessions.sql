-- Sessions as people see them (the account page, `gateway session ...`) and failed sign-ins.
-- Ending a session always goes through daemon.session_revoke, the one place that ends sessions
-- (token families, the revocation notice to every token handler, back-channel logout).

DROP FUNCTION IF EXISTS daemon.login_failure(text, text, text, inet, text);  -- p_user_id added
CREATE OR REPLACE FUNCTION daemon.login_failure(
    p_user_id uuid, p_login text, p_client_id text, p_origin text, p_ip inet, p_user_agent text
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM daemon.audit_context(NULL, p_ip, p_user_agent);
    -- The name as typed only when it names an account (p_user_id: the caller looked it up):
    -- an unknown "name" may be a password typed into the wrong field, and the audit goes to
    -- operators and SIEMs.
    PERFORM daemon.audit('login.failure', p_user_id, p_client_id, NULL, p_ip,
                         CASE WHEN p_user_id IS NOT NULL
                              THEN jsonb_build_object('login', left(p_login, 128), 'origin', p_origin)
                              ELSE jsonb_build_object('login_length', length(p_login),
                                                      'origin', p_origin) END);
END;
$$;
COMMENT ON FUNCTION daemon.login_failure(uuid, text, text, text, inet, text) IS
    'Audit a failed sign-in (wrong password, unknown or locked account): login.failure with the '
    'account the caller found for the name (p_user_id) and the name as typed (128 characters at '
    'most), or for an unknown name only its length; never the password';

CREATE OR REPLACE FUNCTION daemon.session_list(p_user_id uuid, p_include_over boolean)
RETURNS TABLE (session_id uuid, client_id text, app text, kind text, ip inet, user_agent text,
               created_at timestamptz, last_seen_at timestamptz, expires_at timestamptz,
               revoked_at timestamptz, revoked_reason text, state text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.id, s.client_id, c.app, s.kind, s.ip, s.user_agent, s.created_at, s.last_seen_at,
           s.expires_at, s.revoked_at, s.revoked_reason,
           CASE WHEN s.revoked_at IS NOT NULL THEN 'ended'
                WHEN s.expires_at <= daemon.now() THEN 'expired'
                ELSE 'live' END
    FROM auth.session s LEFT JOIN oauth2.client c ON c.client_id = s.client_id
    WHERE s.user_id = p_user_id
      AND (p_include_over OR (s.revoked_at IS NULL AND s.expires_at > daemon.now()))
    ORDER BY (s.revoked_at IS NULL AND s.expires_at > daemon.now()) DESC, s.last_seen_at DESC,
             s.id;
$$;
COMMENT ON FUNCTION daemon.session_list(uuid, boolean) IS
    'A user''s sessions, live ones first and most recently used first (last_seen_at: the sign-in, '
    'the last token issued or refreshed in it); with p_include_over also the ended (revoked) and '
    'expired ones housekeeping has not deleted yet. state: live, ended or expired.';

DROP FUNCTION IF EXISTS daemon.session_end(uuid, uuid, text, text, inet, text);  -- was uuid
CREATE FUNCTION daemon.session_end(
    p_session_id uuid, p_user_id uuid, p_reason text, p_actor text, p_ip inet, p_user_agent text
) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user uuid;
BEGIN
    SELECT s.user_id INTO v_user FROM auth.session s
    WHERE s.id = p_session_id AND s.revoked_at IS NULL AND s.expires_at > daemon.now();
    IF p_user_id IS NOT NULL AND v_user IS DISTINCT FROM p_user_id THEN
        RETURN false;  -- not a live session of this user: nothing happens
    END IF;
    PERFORM daemon.audit_context(coalesce(p_actor, 'user:' || v_user), p_ip, p_user_agent);
    -- Without p_user_id (sign-out, an operator) whatever is not ended yet: a live session, one
    -- past its end but never revoked, or the token handler's session at an external provider.
    RETURN daemon.session_revoke(p_session_id, p_reason);
END;
$$;
COMMENT ON FUNCTION daemon.session_end(uuid, uuid, text, text, inet, text) IS
    'End a session through daemon.session_revoke: with p_user_id only a live session of that '
    'user, without it any session (or token handler external session) not ended yet; audited '
    'with p_actor (default user:<owner>), p_ip and p_user_agent. True when it ended one.';

CREATE OR REPLACE FUNCTION daemon.session_end_all(
    p_user_id uuid, p_except uuid, p_reason text, p_actor text, p_ip inet, p_user_agent text
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_session uuid;
    v_ended integer := 0;
BEGIN
    PERFORM daemon.audit_context(coalesce(p_actor, 'user:' || p_user_id), p_ip, p_user_agent);
    FOR v_session IN
        SELECT s.id FROM auth.session s
        WHERE s.user_id = p_user_id AND s.revoked_at IS NULL AND s.expires_at > daemon.now()
          AND s.id IS DISTINCT FROM p_except
        ORDER BY s.id
    LOOP
        IF daemon.session_revoke(v_session, p_reason) THEN
            v_ended := v_ended + 1;
        END IF;
    END LOOP;
    RETURN v_ended;
END;
$$;
COMMENT ON FUNCTION daemon.session_end_all(uuid, uuid, text, text, inet, text) IS
    'End every live session of a user except p_except (NULL: all of them), each through '
    'daemon.session_revoke; audited with p_actor (default user:<id>), p_ip, p_user_agent. '
    'Returns how many were ended.';
