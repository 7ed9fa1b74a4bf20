-- The audit log (audit.event): one row per security event, written inside the transaction of
-- whatever caused it. Event kinds are a stable contract (docs/audit.md lists them); detail
-- never holds a secret (no token, code, cookie, password or client secret).
--
-- Who and from where: daemon.audit takes the address as an argument; the actor and the
-- User-Agent (and the address, when the argument is NULL) come from the transaction's audit
-- context, which an outer function sets with daemon.audit_context before it changes anything.
-- So a nested call (daemon.session_revoke inside daemon.user_update) records the same context
-- without passing it down. The context is transaction-local (set_config(..., true)): it never
-- outlives the statement's transaction on a pooled connection.

CREATE OR REPLACE FUNCTION daemon.audit_context(p_actor text, p_ip inet, p_user_agent text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT set_config('gateway.audit_actor', coalesce(p_actor, ''), true),
           set_config('gateway.audit_ip', coalesce(host(p_ip), ''), true),
           set_config('gateway.audit_user_agent', coalesce(left(p_user_agent, 512), ''), true);
$$;
COMMENT ON FUNCTION daemon.audit_context(text, inet, text) IS
    'Who is acting (cli, user:<uuid>, client:<id>, system), from which address and User-Agent, for '
    'every audit event of the current transaction that does not name its own address';

CREATE OR REPLACE FUNCTION daemon.audit(
    p_kind text, p_user_id uuid, p_client_id text, p_session_id uuid, p_ip inet,
    p_detail jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO audit.event (kind, user_id, client_id, session_id, ip, detail, actor, user_agent)
    VALUES (p_kind, p_user_id, p_client_id, p_session_id,
            coalesce(p_ip, nullif(current_setting('gateway.audit_ip', true), '')::inet),
            coalesce(p_detail, '{}'),
            nullif(current_setting('gateway.audit_actor', true), ''),
            nullif(current_setting('gateway.audit_user_agent', true), ''));
$$;
COMMENT ON FUNCTION daemon.audit(text, uuid, text, uuid, inet, jsonb) IS
    'Record a security event; actor, User-Agent (and the address when p_ip is NULL) come from '
    'daemon.audit_context. Callers never pass secrets in p_detail.';

DROP FUNCTION IF EXISTS daemon.audit_list(text, text[], timestamptz, integer);  -- by user id
CREATE OR REPLACE FUNCTION daemon.audit_list(
    p_user_id uuid, p_kinds text[], p_since timestamptz, p_limit integer
) RETURNS TABLE (id bigint, at timestamptz, kind text, actor text, user_id uuid, username text,
                 client_id text, session_id uuid, ip inet, user_agent text, detail jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 100000 THEN
        RAISE EXCEPTION 'limit must be 1 to 100000' USING ERRCODE = 'GW002';
    END IF;
    -- The newest p_limit events, returned oldest first (as a log reads).
    RETURN QUERY
        SELECT * FROM (
            SELECT e.id, e.at, e.kind, e.actor, e.user_id, u.username, e.client_id, e.session_id,
                   e.ip, e.user_agent, e.detail
            FROM audit.event e LEFT JOIN auth.users u ON u.id = e.user_id
            WHERE (p_user_id IS NULL OR e.user_id = p_user_id)
              AND (p_kinds IS NULL OR e.kind = ANY (p_kinds))
              AND (p_since IS NULL OR e.at >= p_since)
            ORDER BY e.id DESC
            LIMIT p_limit) newest
        ORDER BY newest.id;
END;
$$;
COMMENT ON FUNCTION daemon.audit_list(uuid, text[], timestamptz, integer) IS
    'The newest p_limit audit events (oldest first), of one user and of some kinds when given, '
    'since p_since when given (the caller finds the user as every command does: '
    'daemon.user_lookup). GW002 for a bad limit.';

DROP FUNCTION IF EXISTS daemon.audit_after(bigint, integer);  -- unused: the SIEM output follows by transaction (audit_emit)

DROP FUNCTION IF EXISTS daemon.audit_emit(integer, integer);  -- by transaction now (0014)
CREATE OR REPLACE FUNCTION daemon.audit_emit(p_limit integer)
RETURNS TABLE (id bigint, at timestamptz, kind text, actor text, user_id uuid, username text,
               client_id text, session_id uuid, ip inet, user_agent text, detail jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Every transaction below this one has ended: the events it left are final. Read before
    -- this transaction takes an id of its own (the cursor's row lock gives it one).
    v_done xid8 := pg_snapshot_xmin(pg_current_snapshot());
    v_xid xid8;
    v_last bigint;
    r record;
BEGIN
    -- One writer at a time across every process and replica: the others get nothing. The lock
    -- ends with the caller's transaction, which writes the lines before it commits (a writer
    -- that dies before its commit leaves the events to the next one: at least once).
    IF NOT pg_try_advisory_xact_lock(hashtext('gateway.audit_log')) THEN
        RETURN;
    END IF;
    SELECT c.last_xid, c.last_id INTO v_xid, v_last FROM audit.log_cursor c FOR UPDATE;
    IF NOT FOUND THEN
        -- Switched on for the first time: from now on (the past stays in `gateway audit`).
        INSERT INTO audit.log_cursor (last_xid, last_id) VALUES (v_done, 0);
        RETURN;
    END IF;
    FOR r IN
        SELECT e.id, e.at, e.kind, e.actor, e.user_id, u.username, e.client_id, e.session_id,
               e.ip, e.user_agent, e.detail, e.xid
        FROM audit.event e LEFT JOIN auth.users u ON u.id = e.user_id
        WHERE e.xid IS NOT NULL AND (e.xid, e.id) > (v_xid, v_last) AND e.xid < v_done
        ORDER BY e.xid, e.id
        LIMIT p_limit
    LOOP
        id := r.id; at := r.at; kind := r.kind; actor := r.actor; user_id := r.user_id;
        username := r.username; client_id := r.client_id; session_id := r.session_id;
        ip := r.ip; user_agent := r.user_agent; detail := r.detail;
        RETURN NEXT;
        v_xid := r.xid;
        v_last := r.id;
    END LOOP;
    UPDATE audit.log_cursor SET last_xid = v_xid, last_id = v_last, updated_at = daemon.now();
END;
$$;
COMMENT ON FUNCTION daemon.audit_emit(integer) IS
    'The next audit events to write to the log (audit.log), at most p_limit, in (transaction, id) '
    'order, of transactions that have all ended (older than every running one), and the cursor '
    'moved past them in the caller''s transaction: an event can never appear behind the cursor. '
    'Nothing when another process holds the writer''s lock. The first call only places the cursor.';
