-- Self-registration and account recovery (issue 12 item 5). An account link is a token whose
-- SHA-256 is in auth.account_token:
--
--   daemon.account_register -> pending account + verify_email link + its mail, in one transaction
--        (the email has a verified account: a notice mail instead, nothing else changes;
--         the email has a pending account: that account takes the new details, older links die)
--   daemon.account_verify   -> used; the account is verified and may sign in
--   daemon.account_recover  -> reset_password link + its mail, in one transaction (no account
--        with the email, or a locked one: nothing at all; the caller answers the same)
--   daemon.account_reset    -> used; a new password through daemon.user_update, which ends
--        every session of the user; every other open link of the user dies
--
-- Redeeming locks the token row: of two browsers using one link at once exactly one wins.

CREATE OR REPLACE FUNCTION daemon.account_register(
    p_email text, p_username text, p_name text, p_password_hash text,
    p_token_hash bytea, p_ttl integer, p_continue text,
    p_verify_mail_id uuid, p_verify_content_sealed text,
    p_notice_mail_id uuid, p_notice_content_sealed text
) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user auth.users%ROWTYPE;
    v_id uuid;
BEGIN
    IF p_email IS NULL OR length(p_email) NOT BETWEEN 3 AND 320 OR position('@' IN p_email) = 0 THEN
        RAISE EXCEPTION 'not an email address' USING ERRCODE = 'GW002';
    END IF;
    IF p_username IS NULL OR length(p_username) NOT BETWEEN 1 AND 128
       OR position('@' IN p_username) > 0 THEN
        RAISE EXCEPTION 'user name must be 1 to 128 characters without @' USING ERRCODE = 'GW002';
    END IF;
    IF p_password_hash IS NULL OR p_password_hash NOT LIKE '$argon2id$%' THEN
        RAISE EXCEPTION 'password hash must be argon2id' USING ERRCODE = 'GW002';
    END IF;
    IF p_ttl IS NULL OR p_ttl < 60 THEN
        RAISE EXCEPTION 'link lifetime must be at least a minute' USING ERRCODE = 'GW002';
    END IF;
    -- One registration of an email at a time.
    PERFORM pg_advisory_xact_lock(hashtextextended('account:' || lower(p_email), 0));
    SELECT * INTO v_user FROM auth.users u WHERE lower(u.email) = lower(p_email) FOR UPDATE;
    -- A taken user name is refused whatever the email, so that the refusal says nothing about
    -- the email (only the pending account of this very email may keep its own name).
    IF EXISTS (SELECT 1 FROM auth.users u WHERE lower(u.username) = lower(p_username)
               AND (v_user.id IS NULL OR u.id <> v_user.id OR NOT v_user.pending_verification)) THEN
        RAISE EXCEPTION 'a user with this name or email already exists' USING ERRCODE = 'GW001';
    END IF;
    IF v_user.id IS NULL OR v_user.pending_verification THEN
        PERFORM daemon.user_names_check(p_username, p_email, v_user.id);
    END IF;
    IF v_user.id IS NOT NULL AND NOT v_user.pending_verification THEN
        IF p_notice_mail_id IS NOT NULL AND NOT v_user.locked THEN
            PERFORM daemon.mail_enqueue(p_notice_mail_id, 'account_exists', p_email,
                                        p_notice_content_sealed);
        END IF;
        PERFORM daemon.audit('account.register_existing', v_user.id, NULL, NULL, NULL, '{}');
        RETURN 'exists';
    END IF;
    IF v_user.id IS NOT NULL THEN
        -- Still pending: whoever controls the mailbox decides, by the newest link only.
        UPDATE auth.users SET username = p_username, name = nullif(p_name, ''),
            password_hash = p_password_hash, password_changed_at = daemon.now(),
            updated_at = daemon.now()
        WHERE id = v_user.id;
        UPDATE auth.account_token SET used_at = daemon.now()
        WHERE user_id = v_user.id AND used_at IS NULL;
        v_id := v_user.id;
    ELSE
        INSERT INTO auth.users (username, email, name, password_hash, pending_verification,
                                email_verified, created_at, updated_at, password_changed_at)
        VALUES (p_username, p_email, nullif(p_name, ''), p_password_hash, true, false,
                daemon.now(), daemon.now(), daemon.now())
        RETURNING id INTO v_id;
    END IF;
    INSERT INTO auth.account_token (purpose, user_id, token_hash, continue_to, expires_at)
    VALUES ('verify_email', v_id, p_token_hash, p_continue, daemon.now() + make_interval(secs => p_ttl));
    IF p_verify_mail_id IS NOT NULL THEN
        PERFORM daemon.mail_enqueue(p_verify_mail_id, 'verify_email', p_email,
                                    p_verify_content_sealed);
    END IF;
    PERFORM daemon.audit('account.register', v_id, NULL, NULL, NULL,
                         jsonb_build_object('replaced', v_user.id IS NOT NULL));
    RETURN CASE WHEN v_user.id IS NULL THEN 'created' ELSE 'replaced' END;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'a user with this name or email already exists' USING ERRCODE = 'GW001';
END;
$$;
COMMENT ON FUNCTION daemon.account_register(text, text, text, text, bytea, integer, text, uuid, text, uuid, text) IS
    'Self-registration: a pending account with a verify_email link and its mail (sealed by the '
    'caller) in one transaction; for an email with a verified account, the notice mail only '
    '(the caller answers the same either way). Returns created, replaced (a pending account of '
    'the email took the new details) or exists. GW001 when the user name is taken, GW002.';

CREATE OR REPLACE FUNCTION daemon.account_link_lookup(p_token_hash bytea, p_purpose text)
RETURNS TABLE (state text, email text, continue_to text, expires_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN t.used_at IS NOT NULL THEN 'used'
                WHEN t.expires_at <= daemon.now() THEN 'expired'
                ELSE 'pending' END,
           u.email, t.continue_to, t.expires_at
    FROM auth.account_token t JOIN auth.users u ON u.id = t.user_id
    WHERE t.token_hash = p_token_hash AND t.purpose = p_purpose;
$$;
COMMENT ON FUNCTION daemon.account_link_lookup(bytea, text) IS
    'An account link as its page shows it: pending, used or expired; no row for an unknown one';

CREATE OR REPLACE FUNCTION daemon.account_link_claim(p_token_hash bytea, p_purpose text)
RETURNS auth.account_token
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t auth.account_token;
BEGIN
    SELECT * INTO t FROM auth.account_token a
    WHERE a.token_hash = p_token_hash AND a.purpose = p_purpose FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown account link' USING ERRCODE = 'GK001';
    END IF;
    IF t.used_at IS NOT NULL THEN
        RAISE EXCEPTION 'account link used' USING ERRCODE = 'GK003';
    END IF;
    IF t.expires_at <= daemon.now() THEN
        RAISE EXCEPTION 'account link expired' USING ERRCODE = 'GK002';
    END IF;
    UPDATE auth.account_token SET used_at = daemon.now() WHERE id = t.id;
    RETURN t;
END;
$$;
COMMENT ON FUNCTION daemon.account_link_claim(bytea, text) IS
    'Use up an account link (row locked): GK001 unknown, GK002 expired, GK003 used';

CREATE OR REPLACE FUNCTION daemon.account_verify(p_token_hash bytea)
RETURNS TABLE (user_id uuid, continue_to text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t auth.account_token := daemon.account_link_claim(p_token_hash, 'verify_email');
BEGIN
    UPDATE auth.users u SET pending_verification = false, email_verified = true,
        updated_at = daemon.now()
    WHERE u.id = t.user_id;
    PERFORM daemon.audit('account.verify', t.user_id, NULL, NULL, NULL, '{}');
    RETURN QUERY SELECT t.user_id, t.continue_to;
END;
$$;
COMMENT ON FUNCTION daemon.account_verify(bytea) IS
    'Use a verify_email link: the account is verified and may sign in. GK001, GK002, GK003.';

CREATE OR REPLACE FUNCTION daemon.account_recover(
    p_email text, p_token_hash bytea, p_ttl integer, p_continue text,
    p_mail_id uuid, p_mail_content_sealed text
) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user auth.users%ROWTYPE;
BEGIN
    IF p_email IS NULL OR length(p_email) NOT BETWEEN 3 AND 320 OR position('@' IN p_email) = 0 THEN
        RAISE EXCEPTION 'not an email address' USING ERRCODE = 'GW002';
    END IF;
    IF p_ttl IS NULL OR p_ttl < 60 THEN
        RAISE EXCEPTION 'link lifetime must be at least a minute' USING ERRCODE = 'GW002';
    END IF;
    SELECT * INTO v_user FROM auth.users u WHERE lower(u.email) = lower(p_email) FOR UPDATE;
    IF NOT FOUND OR v_user.locked THEN
        RETURN false;  -- nothing at all: the caller's answer is the same
    END IF;
    INSERT INTO auth.account_token (purpose, user_id, token_hash, continue_to, expires_at)
    VALUES ('reset_password', v_user.id, p_token_hash, p_continue,
            daemon.now() + make_interval(secs => p_ttl));
    IF p_mail_id IS NOT NULL THEN
        PERFORM daemon.mail_enqueue(p_mail_id, 'reset_password', p_email, p_mail_content_sealed);
    END IF;
    PERFORM daemon.audit('account.recover', v_user.id, NULL, NULL, NULL, '{}');
    RETURN true;
END;
$$;
COMMENT ON FUNCTION daemon.account_recover(text, bytea, integer, text, uuid, text) IS
    'A reset_password link and its mail (sealed by the caller) for the account with this email, '
    'in one transaction; false and nothing at all when there is none or it is locked. GW002.';

CREATE OR REPLACE FUNCTION daemon.account_reset(p_token_hash bytea, p_password_hash text)
RETURNS TABLE (user_id uuid, continue_to text, sessions_ended integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t auth.account_token;
    v_username text;
    v_ended integer;
BEGIN
    IF p_password_hash IS NULL OR p_password_hash NOT LIKE '$argon2id$%' THEN
        RAISE EXCEPTION 'password hash must be argon2id' USING ERRCODE = 'GW002';
    END IF;
    t := daemon.account_link_claim(p_token_hash, 'reset_password');
    SELECT u.username INTO v_username FROM auth.users u WHERE u.id = t.user_id AND NOT u.locked;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown account link' USING ERRCODE = 'GK001';  -- locked since
    END IF;
    -- The existing path for a new password: audited, ends every session of the user.
    v_ended := daemon.user_update(v_username, p_password_hash, NULL, 'user:' || t.user_id);
    -- The link reached the mailbox: a pending account is verified by it too.
    UPDATE auth.users u SET pending_verification = false, email_verified = true
    WHERE u.id = t.user_id;
    UPDATE auth.account_token a SET used_at = daemon.now()
    WHERE a.user_id = t.user_id AND a.used_at IS NULL;
    PERFORM daemon.audit('account.reset', t.user_id, NULL, NULL, NULL,
                         jsonb_build_object('sessions_ended', v_ended));
    RETURN QUERY SELECT t.user_id, t.continue_to, v_ended;
END;
$$;
COMMENT ON FUNCTION daemon.account_reset(bytea, text) IS
    'Use a reset_password link: the new password (argon2id) through daemon.user_update, which '
    'ends every session of the user; every other open link of the user is used up. GK001, '
    'GK002, GK003, GW002.';
