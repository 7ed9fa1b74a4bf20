CREATE OR REPLACE FUNCTION daemon.identity_login(
    p_provider text, p_subject text, p_email text, p_email_verified boolean
) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user uuid;
    v_locked boolean;
BEGIN
    IF p_provider IS NULL OR p_subject IS NULL OR p_subject = '' OR length(p_subject) > 255 THEN
        RAISE EXCEPTION 'provider and subject are required' USING ERRCODE = 'GW002';
    END IF;
    SELECT i.user_id, u.locked INTO v_user, v_locked
    FROM auth.identity i JOIN auth.users u ON u.id = i.user_id
    WHERE i.provider = p_provider AND i.subject = p_subject
    FOR UPDATE OF i;
    IF FOUND THEN
        IF v_locked THEN
            RAISE EXCEPTION 'the account cannot sign in' USING ERRCODE = 'OA006';
        END IF;
        UPDATE auth.identity SET last_login_at = now(), email = coalesce(p_email, email)
        WHERE provider = p_provider AND subject = p_subject;
        PERFORM daemon.audit('identity.login', v_user, NULL, NULL, NULL,
                             jsonb_build_object('provider', p_provider));
        RETURN v_user;
    END IF;
    -- First sign-in with this provider account: link it to the user with that email, only when
    -- the provider vouches for the address (an unverified email could be anyone's).
    IF NOT coalesce(p_email_verified, false) OR p_email IS NULL OR position('@' IN p_email) = 0 THEN
        RAISE EXCEPTION 'no account is linked to this identity' USING ERRCODE = 'OA006';
    END IF;
    SELECT id, locked INTO v_user, v_locked FROM auth.users WHERE lower(email) = lower(p_email);
    IF NOT FOUND OR v_locked THEN
        RAISE EXCEPTION 'no account is linked to this identity' USING ERRCODE = 'OA006';
    END IF;
    INSERT INTO auth.identity (provider, subject, user_id, email)
    VALUES (p_provider, p_subject, v_user, p_email)
    ON CONFLICT (provider, subject) DO NOTHING;
    PERFORM daemon.audit('identity.link', v_user, NULL, NULL, NULL,
                         jsonb_build_object('provider', p_provider));
    RETURN v_user;
END;
$$;
COMMENT ON FUNCTION daemon.identity_login(text, text, text, boolean) IS
    'The local user an external identity (provider, sub) signs in as: through its link, or on '
    'first use by linking to the user whose email the provider verified. OA006 (access_denied) '
    'when there is no such user or it is locked; GW002 on bad input.';
