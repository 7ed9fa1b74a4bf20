DROP FUNCTION IF EXISTS daemon.identity_login(text, text, text, boolean);

CREATE OR REPLACE FUNCTION daemon.identity_login(p_issuer text, p_subject text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user uuid;
    v_locked boolean;
BEGIN
    SELECT i.user_id, u.locked INTO v_user, v_locked
    FROM auth.identity i JOIN auth.users u ON u.id = i.user_id
    WHERE i.issuer = p_issuer AND i.subject = p_subject;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_locked THEN
        RAISE EXCEPTION 'the account cannot sign in' USING ERRCODE = 'GS004';
    END IF;
    UPDATE auth.identity SET last_login_at = daemon.now()
    WHERE issuer = p_issuer AND subject = p_subject;
    PERFORM daemon.audit('identity.login', v_user, NULL, NULL, NULL,
                         jsonb_build_object('issuer', p_issuer));
    RETURN v_user;
END;
$$;
COMMENT ON FUNCTION daemon.identity_login(text, text) IS
    'The local user an external identity (its ID token''s iss and sub) is linked to; NULL when it '
    'is linked to nobody yet; OA006 (access_denied) when that user is locked.';

DROP FUNCTION IF EXISTS daemon.identity_link(text, text, text, uuid, text);
DROP FUNCTION IF EXISTS daemon.identity_link(text, text, text, uuid, text, timestamptz);
CREATE FUNCTION daemon.identity_link(
    p_provider text, p_issuer text, p_subject text, p_user_id uuid, p_email text,
    p_password_changed_at timestamptz
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user uuid;
BEGIN
    IF p_issuer IS NULL OR p_subject IS NULL OR p_subject = '' OR length(p_subject) > 255
       OR p_provider IS NULL OR p_user_id IS NULL THEN
        RAISE EXCEPTION 'provider, issuer, subject and user are required' USING ERRCODE = 'GW002';
    END IF;
    -- As daemon.login: the password just verified must still be the user's, and a concurrent
    -- daemon.user_update (which removes links on a new password) waits for this link or is seen.
    PERFORM 1 FROM auth.users u WHERE u.id = p_user_id AND NOT u.locked
        AND u.password_changed_at = p_password_changed_at
    FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the account cannot sign in' USING ERRCODE = 'GS003';
    END IF;
    INSERT INTO auth.identity (issuer, subject, provider, user_id, email)
    VALUES (p_issuer, p_subject, p_provider, p_user_id, left(p_email, 320))
    ON CONFLICT (issuer, subject) DO NOTHING;
    SELECT user_id INTO v_user FROM auth.identity WHERE issuer = p_issuer AND subject = p_subject;
    IF v_user <> p_user_id THEN
        RAISE EXCEPTION 'this identity is linked to another user' USING ERRCODE = 'GS005';
    END IF;
    PERFORM daemon.audit('identity.link', p_user_id, NULL, NULL, NULL,
                         jsonb_build_object('issuer', p_issuer, 'provider', p_provider));
END;
$$;
COMMENT ON FUNCTION daemon.identity_link(text, text, text, uuid, text, timestamptz) IS
    'Link an external identity to a user who has just proved the local password (whose '
    'password_changed_at is given) in the same flow. OA001 when the user is locked or the password '
    'changed meanwhile; OA006 when the identity is linked to someone else; GW002 on bad input.';
