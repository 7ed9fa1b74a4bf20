-- OpenID Connect Back-Channel Logout (table auth.backchannel_logout, migration 0012).
--
--   session ends (revoked_at NULL -> a time) --trigger backchannel_enqueue-->
--                                       queued, due now, one row per client that received
--                                       tokens in the session (auth.token_family) and has a
--                                       backchannel_logout_uri; NOTIFY gateway_backchannel_logout
--                                       wakes the senders at commit
--   queued and due  --backchannel_claim-->     sending, leased to one sender for p_lease seconds
--                                              (FOR UPDATE SKIP LOCKED)
--   sending, lease over --backchannel_claim--> sending, leased to the new claimant
--   sending --backchannel_sent-->              sent (the client answered 200 or 204)
--   sending --backchannel_failed-->            queued again after a backoff of 10 s doubling up
--                                              to 1 h, or failed once p_max_age seconds have
--                                              passed since it was queued
--   sending --backchannel_skipped-->           skipped: the client has no URI any more
--   sending --backchannel_release-->           queued, due now (its sender stopped)
--
-- Why a trigger rather than a helper that each session-ending function calls: the trigger
-- fires for every UPDATE that ends a session (daemon.session_revoke from logout, replay, RFC
-- 7009 and operators; daemon.user_update; any function written later; an operator's own UPDATE
-- in psql), in the same transaction, so no path can forget to tell the clients.

CREATE OR REPLACE FUNCTION daemon.backchannel_enqueue() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    IF NEW.user_id IS NULL THEN
        RETURN NULL;  -- a service session (client_credentials): no user to log out
    END IF;
    INSERT INTO auth.backchannel_logout (session_id, user_id, client_id, reason)
    SELECT DISTINCT NEW.id, NEW.user_id, f.client_id, NEW.revoked_reason
    FROM auth.token_family f
    JOIN oauth2.client c ON c.client_id = f.client_id
    WHERE f.session_id = NEW.id
      AND coalesce(c.settings->>'backchannel_logout_uri', '') <> ''
    ON CONFLICT ON CONSTRAINT backchannel_logout_once DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
        PERFORM pg_notify('gateway_backchannel_logout', '');
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION daemon.backchannel_enqueue() IS
    'Trigger of auth.session: when a session ends, queue a back-channel logout for every client '
    'that received tokens in it and has a backchannel_logout_uri, and wake the senders';

CREATE OR REPLACE TRIGGER session_ended_backchannel_logout
    AFTER UPDATE OF revoked_at ON auth.session
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION daemon.backchannel_enqueue();
COMMENT ON TRIGGER session_ended_backchannel_logout ON auth.session IS
    'Every way a session ends queues its back-channel logouts (daemon.backchannel_enqueue)';

CREATE OR REPLACE FUNCTION daemon.backchannel_claim(p_limit integer, p_lease integer)
RETURNS TABLE (id uuid, session_id uuid, user_id uuid, client_id text, attempts integer,
               claim uuid)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := daemon.now();
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_lease IS NULL OR p_lease < 1 THEN
        RAISE EXCEPTION 'limit and lease must be >= 1' USING ERRCODE = 'GW002';
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT b.id FROM auth.backchannel_logout b
        WHERE (b.state = 'queued' AND b.next_attempt_at <= v_now)
           OR (b.state = 'sending' AND b.lease_until <= v_now)
        ORDER BY b.next_attempt_at, b.created_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE auth.backchannel_logout b
    SET state = 'sending', attempts = b.attempts + 1, claim = gen_random_uuid(),
        claimed_at = v_now, lease_until = v_now + make_interval(secs => p_lease)
    FROM picked
    WHERE b.id = picked.id
    RETURNING b.id, b.session_id, b.user_id, b.client_id, b.attempts, b.claim;
END;
$$;
COMMENT ON FUNCTION daemon.backchannel_claim(integer, integer) IS
    'Lease up to p_limit due back-channel logouts (queued and due, or sending with an expired '
    'lease) to the caller for p_lease seconds; rows another transaction holds are skipped. GW002 '
    'on bad input.';

CREATE OR REPLACE FUNCTION daemon.backchannel_sent(p_id uuid, p_claim uuid) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE auth.backchannel_logout
    SET state = 'sent', sent_at = daemon.now(), last_error = NULL, claim = NULL, lease_until = NULL
    WHERE id = p_id AND claim = p_claim AND state = 'sending';
    RETURN FOUND;
END;
$$;
COMMENT ON FUNCTION daemon.backchannel_sent(uuid, uuid) IS
    'The client accepted the logout token (200 or 204): sent. False when the claim is no longer '
    'the current one.';

CREATE OR REPLACE FUNCTION daemon.backchannel_failed(
    p_id uuid, p_claim uuid, p_error text, p_max_age integer
) RETURNS TABLE (state text, next_attempt_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := daemon.now();
    r auth.backchannel_logout;
BEGIN
    IF p_max_age IS NULL OR p_max_age < 0 THEN
        RAISE EXCEPTION 'max_age must be >= 0' USING ERRCODE = 'GW002';
    END IF;
    SELECT * INTO r FROM auth.backchannel_logout b
    WHERE b.id = p_id AND b.claim = p_claim AND b.state = 'sending'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF r.queued_at + make_interval(secs => p_max_age) <= v_now THEN
        UPDATE auth.backchannel_logout b
        SET state = 'failed', failed_at = v_now, last_error = left(p_error, 500),
            claim = NULL, lease_until = NULL
        WHERE b.id = p_id;
        RETURN QUERY SELECT 'failed'::text, NULL::timestamptz;
    ELSE
        -- 10 s after the first try, doubling with each, at most an hour apart.
        r.next_attempt_at := v_now + make_interval(
            secs => least(3600, 10 * power(2, least(greatest(r.attempts, 1) - 1, 20))));
        UPDATE auth.backchannel_logout b
        SET state = 'queued', next_attempt_at = r.next_attempt_at,
            last_error = left(p_error, 500), claim = NULL, lease_until = NULL
        WHERE b.id = p_id;
        RETURN QUERY SELECT 'queued'::text, r.next_attempt_at;
    END IF;
END;
$$;
COMMENT ON FUNCTION daemon.backchannel_failed(uuid, uuid, text, integer) IS
    'A try of the claimed logout failed (an answer other than 200/204, or no answer): queued again '
    'after a backoff (10 s doubling up to 1 h), or failed when p_max_age seconds have passed since '
    'it was queued. Returns the new state and next attempt; no row when the claim is no longer the '
    'current one. GW002 on bad input.';

CREATE OR REPLACE FUNCTION daemon.backchannel_skipped(p_id uuid, p_claim uuid, p_reason text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE auth.backchannel_logout
    SET state = 'skipped', failed_at = daemon.now(), last_error = left(p_reason, 500),
        claim = NULL, lease_until = NULL
    WHERE id = p_id AND claim = p_claim AND state = 'sending';
    RETURN FOUND;
END;
$$;
COMMENT ON FUNCTION daemon.backchannel_skipped(uuid, uuid, text) IS
    'Close the claimed row without sending: the client has no backchannel_logout_uri (or no '
    'longer exists) in the configuration at send time.';

CREATE OR REPLACE FUNCTION daemon.backchannel_release(p_id uuid, p_claim uuid) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE auth.backchannel_logout
    SET state = 'queued', next_attempt_at = daemon.now(), claim = NULL, lease_until = NULL
    WHERE id = p_id AND claim = p_claim AND state = 'sending';
    RETURN FOUND;
END;
$$;
COMMENT ON FUNCTION daemon.backchannel_release(uuid, uuid) IS
    'A sender stopping before it knew the outcome gives the logout back: queued, due now';

CREATE OR REPLACE FUNCTION daemon.backchannel_outbox(p_all boolean, p_limit integer)
RETURNS TABLE (id uuid, session_id uuid, user_id uuid, client_id text, reason text, state text,
               attempts integer, last_error text, next_attempt_at timestamptz,
               created_at timestamptz, sent_at timestamptz, failed_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.id, b.session_id, b.user_id, b.client_id, b.reason, b.state, b.attempts,
           b.last_error, CASE WHEN b.state = 'queued' THEN b.next_attempt_at END, b.created_at,
           b.sent_at, b.failed_at
    FROM auth.backchannel_logout b
    WHERE p_all OR b.state IN ('queued', 'sending', 'failed')
    ORDER BY b.created_at, b.id
    LIMIT p_limit;
$$;
COMMENT ON FUNCTION daemon.backchannel_outbox(boolean, integer) IS
    'Back-channel logouts for an operator, oldest first: those not delivered yet (queued, '
    'sending, failed), or with p_all every one housekeeping has kept';
