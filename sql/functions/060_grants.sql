-- Authorization codes, refresh-token rotation, revocation and token status.
--
-- Refresh rotation (daemon.refresh_token), as a state machine of one refresh token:
--
--   current --(presented by its client)--> superseded, successor created (generation + 1);
--             the successor is kept sealed on the family until successor_until (the grace)
--   superseded --(presented within the grace)--> status 'grace': the caller unseals and returns
--             the same successor, so concurrent refreshes converge on one token
--   superseded, unexpired, its successor never used nor delivered --(after the grace,
--             p_recover)--> status 'recovered': the response that carried the successor was lost
--             (a closed tab, an aborted fetch); the unused successor is abandoned and a new one
--             issued, as for 'rotated'. Delivered means a browser presented the successor's
--             access token to a token handler (daemon.family_delivered): then the response was
--             not lost, and the old token coming back is a replay. Only the token handler asks for it (p_recover): its refresh tokens live
--             in sealed HttpOnly cookies; a client holding its own refresh token keeps the
--             strict rule (SECURITY-CHECKLIST items 48, 49).
--   superseded otherwise, or abandoned --(presented after the grace)--> status 'replay': the
--             whole session is revoked (two holders share the family)
--   any --(presented by another client)--> OA001, nothing changes (a misuse is not a replay)
--
-- Why 'recovered' is safe (docs/threat-model.md): a thief who replays a stolen token while the
-- user's successor lies unused gets a successor, and the user's is abandoned; the first time
-- the user (or the thief) presents an abandoned token, or a token whose successor was used,
-- the session ends. Two holders cannot both keep using one family: detection is deferred to
-- the next refresh of the other holder, never lost.

CREATE OR REPLACE FUNCTION daemon.code_issue(
    p_code_hash bytea, p_client_id text, p_user_id uuid, p_session_id uuid, p_redirect_uri text,
    p_scope text[], p_nonce text, p_code_challenge text, p_offline boolean, p_ttl integer
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_auth_time timestamptz;
BEGIN
    SELECT s.auth_time INTO v_auth_time FROM auth.session s
    WHERE s.id = p_session_id AND s.user_id = p_user_id AND s.revoked_at IS NULL AND s.expires_at > daemon.now();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the session is over' USING ERRCODE = 'GS001';
    END IF;
    -- The session's "last used" (the account page): a code issued from it is a use.
    UPDATE auth.session SET last_seen_at = daemon.now() WHERE id = p_session_id;
    INSERT INTO auth.code (code_hash, client_id, user_id, session_id, redirect_uri, scope, nonce,
                           code_challenge, code_challenge_method, offline, expires_at, auth_time)
    VALUES (p_code_hash, p_client_id, p_user_id, p_session_id, p_redirect_uri, coalesce(p_scope, '{}'),
            p_nonce, p_code_challenge, CASE WHEN p_code_challenge IS NULL THEN NULL ELSE 'S256' END,
            p_offline, daemon.now() + make_interval(secs => p_ttl), v_auth_time);
END;
$$;
COMMENT ON FUNCTION daemon.code_issue(bytea, text, uuid, uuid, text, text[], text, text, boolean, integer) IS
    'Store an authorization code (its SHA-256) bound to client, redirect URI, PKCE challenge, user and '
    'session. OA007 when the session is over.';

-- The result columns changed (user name, email and name added, then email_verified): replace,
-- not amend.
DROP FUNCTION IF EXISTS daemon.code_redeem(bytea, text, text, text, bytea, integer);
CREATE FUNCTION daemon.code_redeem(
    p_code_hash bytea, p_client_id text, p_redirect_uri text, p_verifier_challenge text,
    p_refresh_hash bytea, p_refresh_ttl integer
) RETURNS TABLE (status text, session_id uuid, family_id uuid, user_id uuid, scope text[],
                 nonce text, auth_time timestamptz, offline boolean, username text,
                 email text, name text, email_verified boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c auth.code%ROWTYPE;
    v_session auth.session%ROWTYPE;
BEGIN
    SELECT * INTO c FROM auth.code WHERE code_hash = p_code_hash FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown authorization code' USING ERRCODE = 'GC001';
    END IF;
    IF c.used_at IS NOT NULL THEN
        -- RFC 6749 4.1.2: a second use revokes what the first one issued. Returned, not raised,
        -- so that the revocation commits.
        UPDATE auth.token_family SET revoked_at = daemon.now(), revoked_reason = 'code replay',
                                     successor_sealed = NULL
        WHERE code_hash = p_code_hash AND revoked_at IS NULL;
        PERFORM pg_notify('gateway_revocation', 'f:' || f.id)
        FROM auth.token_family f WHERE f.code_hash = p_code_hash;
        PERFORM daemon.audit('code.replay', c.user_id, c.client_id, c.session_id, NULL, '{}');
        status := 'replay';
        RETURN NEXT;
        RETURN;
    END IF;
    IF c.expires_at <= daemon.now() THEN
        RAISE EXCEPTION 'the authorization code has expired' USING ERRCODE = 'GC002';
    END IF;
    IF c.client_id <> p_client_id THEN
        RAISE EXCEPTION 'the code was issued to another client' USING ERRCODE = 'GC003';
    END IF;
    IF c.redirect_uri IS DISTINCT FROM p_redirect_uri AND c.redirect_uri IS NOT NULL THEN
        RAISE EXCEPTION 'redirect_uri differs from the authorization request' USING ERRCODE = 'GC004';
    END IF;
    IF c.code_challenge IS NOT NULL AND p_verifier_challenge IS NULL THEN
        RAISE EXCEPTION 'code_verifier is required' USING ERRCODE = 'GC005';
    END IF;
    IF c.code_challenge IS NULL AND p_verifier_challenge IS NOT NULL THEN
        -- RFC 9700 4.8.2: a verifier without a challenge is a PKCE downgrade.
        RAISE EXCEPTION 'code_verifier sent but no code_challenge was registered' USING ERRCODE = 'GC006';
    END IF;
    IF c.code_challenge IS DISTINCT FROM p_verifier_challenge THEN
        RAISE EXCEPTION 'code_verifier does not match the code_challenge' USING ERRCODE = 'GC007';
    END IF;
    SELECT * INTO v_session FROM auth.session s
    WHERE s.id = c.session_id AND s.revoked_at IS NULL AND s.expires_at > daemon.now();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the session is over' USING ERRCODE = 'GS001';
    END IF;
    SELECT u.username, u.email, u.name, u.email_verified
    INTO username, email, name, email_verified
    FROM auth.users u WHERE u.id = c.user_id AND NOT u.locked;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the account cannot sign in' USING ERRCODE = 'GS003';
    END IF;

    UPDATE auth.code SET used_at = daemon.now() WHERE code_hash = p_code_hash;
    INSERT INTO auth.token_family (session_id, client_id, user_id, scope, origin, code_hash, nonce, expires_at)
    VALUES (c.session_id, c.client_id, c.user_id, c.scope, 'authorization_code', c.code_hash, c.nonce,
            v_session.expires_at)
    RETURNING id INTO family_id;
    IF c.offline AND p_refresh_hash IS NOT NULL THEN
        INSERT INTO auth.refresh_token (token_hash, family_id, generation, expires_at)
        VALUES (p_refresh_hash, family_id, 0,
                least(daemon.now() + make_interval(secs => p_refresh_ttl), v_session.expires_at));
    END IF;
    status := 'ok';
    session_id := c.session_id;
    user_id := c.user_id;
    scope := c.scope;
    nonce := c.nonce;
    auth_time := coalesce(c.auth_time, v_session.auth_time);
    offline := c.offline AND p_refresh_hash IS NOT NULL;
    RETURN NEXT;
END;
$$;
COMMENT ON FUNCTION daemon.code_redeem(bytea, text, text, text, bytea, integer) IS
    'Redeem a code once: checks client, redirect URI, PKCE (p_verifier_challenge is S256 of the verifier) '
    'and opens a token family, with a refresh token when the code is offline. A second use returns '
    'status replay and revokes the families issued from it. Other failures raise OA001.';

CREATE OR REPLACE FUNCTION daemon.family_open(
    p_session_id uuid, p_client_id text, p_user_id uuid, p_scope text[], p_origin text
) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_expires timestamptz;
    v_family uuid;
BEGIN
    SELECT s.expires_at INTO v_expires FROM auth.session s
    WHERE s.id = p_session_id AND s.user_id IS NOT DISTINCT FROM p_user_id
      AND s.revoked_at IS NULL AND s.expires_at > daemon.now();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the session is over' USING ERRCODE = 'GS001';
    END IF;
    INSERT INTO auth.token_family (session_id, client_id, user_id, scope, origin, expires_at)
    VALUES (p_session_id, p_client_id, p_user_id, coalesce(p_scope, '{}'), p_origin, v_expires)
    RETURNING id INTO v_family;
    RETURN v_family;
END;
$$;
COMMENT ON FUNCTION daemon.family_open(uuid, text, uuid, text[], text) IS
    'A token family without a refresh token (tokens from /authorize), inside a live session';

DROP FUNCTION IF EXISTS daemon.refresh_token(bytea, text, bytea, text, text[], integer, integer);
DROP FUNCTION IF EXISTS daemon.refresh_token(
    bytea, text, bytea, text, text[], integer, integer, boolean);
DROP FUNCTION IF EXISTS daemon.refresh_token(
    bytea, text, bytea, text, text[], integer, integer, boolean, inet, text);
DROP FUNCTION IF EXISTS daemon.refresh_token(
    bytea, text, bytea, text, text[], integer, integer, boolean, inet, text, text[]);
CREATE FUNCTION daemon.refresh_token(
    p_old_hash bytea, p_client_id text, p_new_hash bytea, p_new_sealed text, p_scope text[],
    p_grace integer, p_refresh_ttl integer, p_recover boolean DEFAULT false,
    p_ip inet DEFAULT NULL, p_user_agent text DEFAULT NULL, p_guard text[] DEFAULT NULL
) RETURNS TABLE (status text, family_id uuid, session_id uuid, user_id uuid, scope text[],
                 successor_sealed text, auth_time timestamptz, generation integer,
                 username text, email text, name text, email_verified boolean,
                 organizations text[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rt auth.refresh_token%ROWTYPE;
    f auth.token_family%ROWTYPE;
    v_session auth.session%ROWTYPE;
    v_changed timestamptz;
BEGIN
    -- The client's lock (SECURITY-CHECKLIST item 141) before anything else, so a replay seen
    -- below always commits its revocation: GT001 (issue 13: one round trip per grant).
    IF p_guard IS NOT NULL THEN
        PERFORM daemon.throttle_guard(p_guard);
    END IF;
    -- Who refreshes, from where: on every audit event below (and daemon.session_revoke's).
    PERFORM daemon.audit_context('client:' || p_client_id, p_ip, p_user_agent);
    SELECT * INTO rt FROM auth.refresh_token WHERE token_hash = p_old_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown refresh token' USING ERRCODE = 'GR001';
    END IF;
    -- One family at a time: concurrent refreshes of one family queue here, and the token is
    -- read again once the lock is held (another refresh may have superseded it meanwhile).
    SELECT * INTO f FROM auth.token_family WHERE id = rt.family_id FOR UPDATE;
    SELECT * INTO rt FROM auth.refresh_token WHERE token_hash = p_old_hash;
    IF f.client_id <> p_client_id THEN
        RAISE EXCEPTION 'the refresh token was issued to another client' USING ERRCODE = 'GR002';
    END IF;
    IF f.revoked_at IS NOT NULL OR f.expires_at <= daemon.now() THEN
        RAISE EXCEPTION 'the refresh token is no longer valid' USING ERRCODE = 'GR003';
    END IF;
    SELECT * INTO v_session FROM auth.session s WHERE s.id = f.session_id;
    IF v_session.revoked_at IS NOT NULL OR v_session.expires_at <= daemon.now() THEN
        RAISE EXCEPTION 'the session is over' USING ERRCODE = 'GS001';
    END IF;
    IF f.user_id IS NOT NULL THEN
        -- The user's names come back too, so the caller needs no second query for the ID token.
        SELECT u.password_changed_at, u.username, u.email, u.name, u.email_verified
        INTO v_changed, username, email, name, email_verified
        FROM auth.users u WHERE u.id = f.user_id AND NOT u.locked;
        IF NOT FOUND OR v_changed > f.created_at THEN
            RAISE EXCEPTION 'the account changed since the token was issued' USING ERRCODE = 'GS002';
        END IF;
    END IF;

    IF rt.superseded_at IS NOT NULL THEN
        IF rt.abandoned_at IS NULL AND rt.superseded_at > daemon.now() - make_interval(secs => p_grace)
           AND f.successor_until > daemon.now() AND f.successor_sealed IS NOT NULL THEN
            IF p_scope IS NOT NULL AND NOT (p_scope <@ f.scope) THEN
                RAISE EXCEPTION 'the requested scope exceeds the granted scope' USING ERRCODE = 'GR005';
            END IF;
            status := 'grace';
            family_id := f.id; session_id := f.session_id; user_id := f.user_id;
            scope := coalesce(p_scope, f.scope); successor_sealed := f.successor_sealed;
            auth_time := v_session.auth_time; generation := f.generation;
            organizations := daemon.organizations_claim(f.user_id, scope);
            PERFORM daemon.audit('refresh', f.user_id, f.client_id, f.session_id, p_ip,
                                 jsonb_build_object('status', status, 'generation', f.generation));
            RETURN NEXT;
            RETURN;
        END IF;
        IF p_recover AND rt.abandoned_at IS NULL AND rt.generation = f.generation - 1
           AND f.delivered_generation < f.generation AND rt.expires_at > daemon.now() THEN
            -- Its successor is the current token, never used and never seen by a token handler
            -- in a browser's cookie: the response that carried it was lost. Abandon it and
            -- rotate from here (below).
            UPDATE auth.refresh_token r
            SET abandoned_at = daemon.now(), superseded_at = coalesce(r.superseded_at, daemon.now())
            WHERE r.family_id = f.id AND r.generation = f.generation;
            PERFORM daemon.audit('refresh.recovered', f.user_id, f.client_id, f.session_id, p_ip,
                                 jsonb_build_object('generation', rt.generation));
            status := 'recovered';
        ELSE
            -- RFC 9700 4.14.2: a superseded token used again is a replay; end the whole session
            -- (daemon.session_revoke: session, every family in it, audit, revocation notice).
            PERFORM daemon.audit('refresh.replay', f.user_id, f.client_id, f.session_id, p_ip,
                                 jsonb_build_object('generation', rt.generation));
            PERFORM daemon.session_revoke(f.session_id, 'refresh token replay');
            status := 'replay';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    IF rt.expires_at <= daemon.now() THEN
        RAISE EXCEPTION 'the refresh token has expired' USING ERRCODE = 'GR004';
    END IF;
    IF p_scope IS NOT NULL AND NOT (p_scope <@ f.scope) THEN
        RAISE EXCEPTION 'the requested scope exceeds the granted scope' USING ERRCODE = 'GR005';
    END IF;

    UPDATE auth.refresh_token SET superseded_at = daemon.now() WHERE token_hash = p_old_hash;
    INSERT INTO auth.refresh_token (token_hash, family_id, generation, expires_at)
    VALUES (p_new_hash, f.id, f.generation + 1,
            least(daemon.now() + make_interval(secs => p_refresh_ttl), f.expires_at));
    UPDATE auth.token_family
    SET generation = f.generation + 1, successor_sealed = p_new_sealed,
        successor_until = daemon.now() + make_interval(secs => p_grace)
    WHERE id = f.id;
    UPDATE auth.session SET last_seen_at = daemon.now() WHERE id = f.session_id;
    status := coalesce(status, 'rotated');
    PERFORM daemon.audit('refresh', f.user_id, f.client_id, f.session_id, p_ip,
                         jsonb_build_object('status', status, 'generation', f.generation + 1));
    family_id := f.id; session_id := f.session_id; user_id := f.user_id;
    scope := coalesce(p_scope, f.scope); successor_sealed := NULL;
    auth_time := v_session.auth_time; generation := f.generation + 1;
    organizations := daemon.organizations_claim(f.user_id, scope);
    RETURN NEXT;
END;
$$;
COMMENT ON FUNCTION daemon.refresh_token(
    bytea, text, bytea, text, text[], integer, integer, boolean, inet, text, text[]) IS
    'Refused with GT001 first when a p_guard throttle key is locked. Rotate a refresh token (see the state machine at the top of this file). status: rotated (the '
    'caller issues p_new_hash''s token), recovered (likewise, after a lost response: the unused '
    'successor was abandoned; only with p_recover, the token handler''s cookie sessions), grace (the caller unseals successor_sealed and returns that '
    'token again), replay (the session was revoked). username, email and name are the user''s (NULL '
    'for a client''s own family and on replay). OA001 for unknown, foreign, expired or revoked '
    'tokens, a locked user or a password changed since; OA003 when p_scope exceeds the granted scope. '
    'Audited: refresh (rotated, recovered, grace; one row), refresh.recovered, refresh.replay, '
    'with p_ip and p_user_agent.';

DROP FUNCTION IF EXISTS daemon.token_status(uuid);  -- email_verified added to its result
CREATE FUNCTION daemon.token_status(p_family_id uuid)
RETURNS TABLE (active boolean, client_id text, session_id uuid, user_id uuid, username text,
               email text, name text, scope text[], expires_at timestamptz, email_verified boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.revoked_at IS NULL AND f.expires_at > daemon.now() AND s.revoked_at IS NULL
               AND s.expires_at > daemon.now() AND (u.id IS NULL OR NOT u.locked)
               AND (u.id IS NULL OR u.password_changed_at <= f.created_at),
           f.client_id, f.session_id, f.user_id, u.username, u.email, u.name, f.scope, f.expires_at,
           u.email_verified
    FROM auth.token_family f
    JOIN auth.session s ON s.id = f.session_id
    LEFT JOIN auth.users u ON u.id = f.user_id
    WHERE f.id = p_family_id;
$$;
COMMENT ON FUNCTION daemon.token_status(uuid) IS
    'Whether tokens of a family may still be used (the family, its session and its user are live)';

CREATE OR REPLACE FUNCTION daemon.refresh_lookup(p_hash bytea)
RETURNS TABLE (active boolean, family_id uuid, client_id text, user_id uuid, username text,
               scope text[], created_at timestamptz, expires_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT st.active AND r.superseded_at IS NULL AND r.expires_at > daemon.now(),
           r.family_id, st.client_id, st.user_id, st.username, st.scope, r.created_at, r.expires_at
    FROM auth.refresh_token r, LATERAL daemon.token_status(r.family_id) st
    WHERE r.token_hash = p_hash;
$$;
COMMENT ON FUNCTION daemon.refresh_lookup(bytea) IS 'A refresh token by hash, for introspection and revocation';

DROP FUNCTION IF EXISTS daemon.token_revoke(uuid, text, text);
CREATE OR REPLACE FUNCTION daemon.token_revoke(
    p_family_id uuid, p_client_id text, p_reason text, p_ip inet DEFAULT NULL,
    p_user_agent text DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f auth.token_family%ROWTYPE;
BEGIN
    SELECT * INTO f FROM auth.token_family WHERE id = p_family_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'unknown';
    END IF;
    IF f.client_id <> p_client_id THEN
        RETURN 'wrong_client';
    END IF;
    IF f.revoked_at IS NULL THEN
        UPDATE auth.token_family SET revoked_at = daemon.now(), revoked_reason = p_reason, successor_sealed = NULL
        WHERE id = p_family_id;
        PERFORM daemon.audit_context('client:' || p_client_id, p_ip, p_user_agent);
        PERFORM daemon.audit('token.revoke', f.user_id, f.client_id, f.session_id, p_ip,
                             jsonb_build_object('reason', p_reason));
        PERFORM pg_notify('gateway_revocation', 'f:' || p_family_id);
    END IF;
    RETURN 'revoked';
END;
$$;
COMMENT ON FUNCTION daemon.token_revoke(uuid, text, text, inet, text) IS
    'RFC 7009: revoke a token family (its refresh token and every access token issued in it). '
    'Returns revoked, unknown or wrong_client (another client''s token: nothing changes).';

CREATE OR REPLACE FUNCTION daemon.assertion_use(p_issuer text, p_jti text, p_expires_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM auth.assertion WHERE expires_at < daemon.now() - interval '1 day';
    INSERT INTO auth.assertion (issuer, jti, expires_at) VALUES (p_issuer, p_jti, p_expires_at);
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'the assertion was already used' USING ERRCODE = 'GA001';
END;
$$;
COMMENT ON FUNCTION daemon.assertion_use(text, text, timestamptz) IS
    'Record a JWT bearer assertion''s jti; OA001 when it was seen before (replay)';

CREATE OR REPLACE FUNCTION daemon.revocations_since(p_seconds integer)
RETURNS TABLE (kind text, id uuid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 's', s.id FROM auth.session s
    WHERE s.revoked_at > daemon.now() - make_interval(secs => p_seconds)
    UNION ALL
    SELECT 'f', f.id FROM auth.token_family f
    WHERE f.revoked_at > daemon.now() - make_interval(secs => p_seconds)
      AND f.revoked_reason IS DISTINCT FROM 'logout'
    UNION ALL
    SELECT 's', e.id FROM auth.external_session e
    WHERE e.ended_at > daemon.now() - make_interval(secs => p_seconds);
$$;
COMMENT ON FUNCTION daemon.revocations_since(integer) IS
    'Sessions (s) and token families (f) revoked in the last p_seconds: what a token handler must '
    'refuse although their access tokens have not expired. New ones are announced on the '
    'gateway_revocation channel (payload s:<uuid> or f:<uuid>).';

CREATE OR REPLACE FUNCTION daemon.family_delivered(p_family_id uuid, p_generation integer)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE auth.token_family SET delivered_generation = p_generation
    WHERE id = p_family_id AND delivered_generation < p_generation AND generation >= p_generation;
$$;
COMMENT ON FUNCTION daemon.family_delivered(uuid, integer) IS
    'A browser presented the access token of this generation to a token handler: the response '
    'that carried it arrived, so the refresh token before it can no longer be recovered as lost';
