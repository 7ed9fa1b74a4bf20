CREATE OR REPLACE FUNCTION daemon.user_names_check(
    p_username text, p_email text, p_self uuid DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Sign-in takes a user name or an email: neither may name another account's other one
    -- (p_self: the account these are for, when it exists already).
    IF EXISTS (SELECT 1 FROM auth.users u
               WHERE lower(u.email) = lower(p_username) AND u.id IS DISTINCT FROM p_self)
       OR EXISTS (SELECT 1 FROM auth.users u
                  WHERE lower(u.username) = lower(nullif(p_email, ''))
                    AND u.id IS DISTINCT FROM p_self)
    THEN
        RAISE EXCEPTION 'a user with this name or email already exists' USING ERRCODE = 'GW001';
    END IF;
END;
$$;
COMMENT ON FUNCTION daemon.user_names_check(text, text, uuid) IS
    'GW001 when the user name is another account''s email or the email another account''s user '
    'name (sign-in takes either): every way an account is made or renamed checks it.';

CREATE OR REPLACE FUNCTION daemon.user_add(
    p_username text, p_password_hash text, p_email text, p_name text
) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_username IS NULL OR p_username = '' OR length(p_username) > 128 THEN
        RAISE EXCEPTION 'username must be 1 to 128 characters' USING ERRCODE = 'GW002';
    END IF;
    IF p_password_hash IS NULL OR p_password_hash NOT LIKE '$argon2id$%' THEN
        RAISE EXCEPTION 'password hash must be argon2id' USING ERRCODE = 'GW002';
    END IF;
    PERFORM daemon.user_names_check(p_username, p_email);
    INSERT INTO auth.users (username, email, name, password_hash)
    VALUES (p_username, nullif(p_email, ''), nullif(p_name, ''), p_password_hash)
    RETURNING id INTO v_id;
    PERFORM daemon.audit('user.add', v_id, NULL, NULL, NULL, '{}');
    RETURN v_id;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'a user with this name or email already exists' USING ERRCODE = 'GW001';
END;
$$;
COMMENT ON FUNCTION daemon.user_add(text, text, text, text) IS
    'Create a user. Raises GW001 when the name or email is taken, GW002 on bad input.';

DROP FUNCTION IF EXISTS daemon.user_update(text, text, boolean);
CREATE OR REPLACE FUNCTION daemon.user_update(
    p_username text, p_password_hash text, p_locked boolean, p_actor text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id uuid;
    v_session uuid;
    v_ended integer := 0;
    v_reason text;
BEGIN
    IF p_password_hash IS NOT NULL AND p_password_hash NOT LIKE '$argon2id$%' THEN
        RAISE EXCEPTION 'password hash must be argon2id' USING ERRCODE = 'GW002';
    END IF;
    IF p_actor IS NOT NULL THEN
        PERFORM daemon.audit_context(p_actor, NULL, NULL);
    END IF;
    UPDATE auth.users
    SET password_hash = coalesce(p_password_hash, password_hash),
        password_changed_at = CASE WHEN p_password_hash IS NULL THEN password_changed_at ELSE daemon.now() END,
        locked = coalesce(p_locked, locked),
        updated_at = daemon.now()
    WHERE lower(username) = lower(p_username)
    RETURNING id INTO v_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such user' USING ERRCODE = 'GW003';
    END IF;
    PERFORM daemon.audit(CASE WHEN p_password_hash IS NOT NULL THEN 'user.password'
                              WHEN p_locked THEN 'user.lock' ELSE 'user.unlock' END,
                         v_id, NULL, NULL, NULL, '{}');
    -- A new password is a credential reset: external identities linked with the old one must be
    -- linked again with the new one (whoever linked theirs to this account loses it).
    IF p_password_hash IS NOT NULL THEN
        DELETE FROM auth.identity WHERE user_id = v_id;
    END IF;
    -- RFC 9700 4.14.2: a new password or a locked account ends every session of the user, and
    -- with them every refresh token; the token handlers drop cached access tokens on the notice.
    IF p_password_hash IS NOT NULL OR p_locked THEN
        v_reason := CASE WHEN p_password_hash IS NOT NULL THEN 'password changed' ELSE 'account locked' END;
        FOR v_session IN
            SELECT id FROM auth.session WHERE user_id = v_id AND revoked_at IS NULL
        LOOP
            IF daemon.session_revoke(v_session, v_reason) THEN
                v_ended := v_ended + 1;
            END IF;
        END LOOP;
    END IF;
    RETURN v_ended;
END;
$$;
COMMENT ON FUNCTION daemon.user_update(text, text, boolean, text) IS
    'Set a user''s password (argon2id hash) and/or lock flag; NULL keeps a value. A new password or '
    'a lock ends every live session of the user; a new password also removes the user''s external '
    'identity links. Returns the number of sessions ended; GW003 when '
    'there is no such user, GW002 on a bad hash. Audited as user.password, user.lock or '
    'user.unlock (and session.revoke for each session ended) with p_actor (e.g. cli).';
