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
