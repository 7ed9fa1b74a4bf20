CREATE OR REPLACE FUNCTION daemon.audit(
    p_kind text, p_user_id uuid, p_client_id text, p_session_id uuid, p_ip inet,
    p_detail jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO audit.event (kind, user_id, client_id, session_id, ip, detail)
    VALUES (p_kind, p_user_id, p_client_id, p_session_id, p_ip, coalesce(p_detail, '{}'));
$$;
COMMENT ON FUNCTION daemon.audit(text, uuid, text, uuid, inet, jsonb) IS
    'Record a security event. Callers never pass secrets in p_detail.';
