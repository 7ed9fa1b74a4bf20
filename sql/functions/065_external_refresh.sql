-- Refreshes at an external OpenID provider (table auth.external_refresh, migration 0007).
--
-- daemon.external_refresh_claim(hash, session, wait, keep), as a state machine of one provider
-- refresh token presented by a browser:
--   session ended or past its end -> 'ended': sign in again
--   unknown            -> 'claimed': the caller refreshes at the provider, then stores the
--                         successor (external_refresh_store) or the refusal, or releases
--   claimed, no answer -> 'pending' while the claim is younger than p_wait seconds (another
--                         request or replica is refreshing: ask again shortly); an older claim
--                         is taken over ('claimed'): its holder died
--   successor stored   -> 'done' with the successor, within the grace, or after it as long as
--                         no browser has shown it received the successor (a lost response)
--   successor delivered, after the grace -> 'replayed': two holders of one session; the
--                         session ends (like the gateway's own on a replay)
--   a provider that did not rotate the token: once the successor is delivered the row goes,
--                         so the same token refreshes again later (no replay to detect)
--   refused            -> 'refused': the provider said no; sign in again

DROP FUNCTION IF EXISTS daemon.external_refresh_claim(bytea, integer, integer);
CREATE OR REPLACE FUNCTION daemon.external_refresh_claim(
    p_hash bytea, p_session uuid, p_wait integer, p_keep integer
) RETURNS TABLE (outcome text, successor_sealed text, session_expires timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r auth.external_refresh;
    v_expires timestamptz;
BEGIN
    SELECT s.expires_at INTO v_expires FROM auth.external_session s
    WHERE s.id = p_session AND s.ended_at IS NULL AND s.expires_at > daemon.now();
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'ended'::text, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    INSERT INTO auth.external_refresh (token_hash, expires_at)
    VALUES (p_hash, daemon.now() + make_interval(secs => p_keep))
    ON CONFLICT (token_hash) DO NOTHING;
    IF FOUND THEN
        RETURN QUERY SELECT 'claimed'::text, NULL::text, v_expires;
        RETURN;
    END IF;
    SELECT * INTO r FROM auth.external_refresh e WHERE e.token_hash = p_hash FOR UPDATE;
    IF r.refused THEN
        RETURN QUERY SELECT 'refused'::text, NULL::text, v_expires;
    ELSIF r.successor_sealed IS NOT NULL THEN
        IF r.delivered AND r.grace_until <= daemon.now() THEN
            PERFORM daemon.session_revoke(p_session, 'replay');
            RETURN QUERY SELECT 'replayed'::text, NULL::text, v_expires;
        ELSE
            RETURN QUERY SELECT 'done'::text, r.successor_sealed, v_expires;
        END IF;
    ELSIF r.claimed_at > daemon.now() - make_interval(secs => p_wait) THEN
        RETURN QUERY SELECT 'pending'::text, NULL::text, v_expires;
    ELSE
        UPDATE auth.external_refresh e SET claimed_at = daemon.now() WHERE e.token_hash = p_hash;
        RETURN QUERY SELECT 'claimed'::text, NULL::text, v_expires;
    END IF;
END;
$$;
COMMENT ON FUNCTION daemon.external_refresh_claim(bytea, uuid, integer, integer) IS
    'Claim the refresh of an external provider''s refresh token, or learn its outcome (see '
    'sql/functions/065_external_refresh.sql)';

DROP FUNCTION IF EXISTS daemon.external_refresh_store(bytea, text, integer);
CREATE OR REPLACE FUNCTION daemon.external_refresh_store(
    p_hash bytea, p_successor_sealed text, p_grace integer, p_rotated boolean
) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE auth.external_refresh
    SET successor_sealed = p_successor_sealed,
        grace_until = daemon.now() + make_interval(secs => p_grace),
        rotated = p_rotated
    WHERE token_hash = p_hash;
$$;
COMMENT ON FUNCTION daemon.external_refresh_store(bytea, text, integer, boolean) IS
    'The provider''s answer to a claimed refresh: its successor tokens, sealed; p_rotated false '
    'when the provider kept the same refresh token';

CREATE OR REPLACE FUNCTION daemon.external_refresh_refused(p_hash bytea) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE auth.external_refresh SET refused = true, successor_sealed = NULL
    WHERE token_hash = p_hash;
$$;
COMMENT ON FUNCTION daemon.external_refresh_refused(bytea) IS
    'The provider refused this refresh token: every later use signs the browser out';

CREATE OR REPLACE FUNCTION daemon.external_refresh_release(p_hash bytea) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM auth.external_refresh WHERE token_hash = p_hash AND successor_sealed IS NULL
        AND NOT refused;
$$;
COMMENT ON FUNCTION daemon.external_refresh_release(bytea) IS
    'The provider could not be asked (down, slow): the next request may try again';

CREATE OR REPLACE FUNCTION daemon.external_refresh_delivered(p_hash bytea) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- Not rotated: the browser holds the same refresh token, which will be presented again.
    DELETE FROM auth.external_refresh WHERE token_hash = p_hash AND NOT rotated
        AND successor_sealed IS NOT NULL;
    UPDATE auth.external_refresh SET delivered = true
    WHERE token_hash = p_hash AND NOT delivered;
$$;
COMMENT ON FUNCTION daemon.external_refresh_delivered(bytea) IS
    'A browser presented the access token this refresh produced: its response arrived, so the '
    'refresh token before it coming back after the grace is a replay';

CREATE OR REPLACE FUNCTION daemon.external_session_start(
    p_id uuid, p_provider text, p_subject text, p_ttl integer
) RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_expires timestamptz;
BEGIN
    INSERT INTO auth.external_session (id, provider, subject, expires_at)
    VALUES (p_id, p_provider, p_subject, daemon.now() + make_interval(secs => p_ttl))
    RETURNING expires_at INTO v_expires;
    PERFORM daemon.audit('external.sign_in', NULL, NULL, p_id, NULL,
                         jsonb_build_object('provider', p_provider, 'subject', p_subject));
    RETURN v_expires;
END;
$$;
COMMENT ON FUNCTION daemon.external_session_start(uuid, text, text, integer) IS
    'A browser signed in through the token handler at an external provider: its session, '
    'ending after p_ttl seconds at the latest';
