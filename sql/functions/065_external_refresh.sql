-- Refreshes at an external OpenID provider (table auth.external_refresh, migration 0007).
--
-- daemon.external_refresh_claim(hash, wait, keep, grace), as a state machine of one provider
-- refresh token presented by a browser:
--   unknown            -> 'claimed': the caller refreshes at the provider, then stores the
--                         successor (external_refresh_store) or the refusal, or releases
--   claimed, no answer -> 'pending' while the claim is younger than p_wait seconds (another
--                         request or replica is refreshing: ask again shortly); an older claim
--                         is taken over ('claimed'): its holder died
--   successor stored   -> 'done' with the successor, within the grace, or after it as long as
--                         no browser has shown it received the successor (a lost response)
--   successor delivered, after the grace -> 'replayed': two holders of one session
--   refused            -> 'refused': the provider said no; sign in again

DROP FUNCTION IF EXISTS daemon.external_refresh_claim(bytea, integer, integer);
CREATE OR REPLACE FUNCTION daemon.external_refresh_claim(
    p_hash bytea, p_wait integer, p_keep integer
) RETURNS TABLE (outcome text, successor_sealed text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r auth.external_refresh;
BEGIN
    INSERT INTO auth.external_refresh (token_hash, expires_at)
    VALUES (p_hash, daemon.now() + make_interval(secs => p_keep))
    ON CONFLICT (token_hash) DO NOTHING;
    IF FOUND THEN
        RETURN QUERY SELECT 'claimed'::text, NULL::text;
        RETURN;
    END IF;
    SELECT * INTO r FROM auth.external_refresh e WHERE e.token_hash = p_hash FOR UPDATE;
    IF r.refused THEN
        RETURN QUERY SELECT 'refused'::text, NULL::text;
    ELSIF r.successor_sealed IS NOT NULL THEN
        IF r.delivered AND r.grace_until <= daemon.now() THEN
            RETURN QUERY SELECT 'replayed'::text, NULL::text;
        ELSE
            RETURN QUERY SELECT 'done'::text, r.successor_sealed;
        END IF;
    ELSIF r.claimed_at > daemon.now() - make_interval(secs => p_wait) THEN
        RETURN QUERY SELECT 'pending'::text, NULL::text;
    ELSE
        UPDATE auth.external_refresh e SET claimed_at = daemon.now() WHERE e.token_hash = p_hash;
        RETURN QUERY SELECT 'claimed'::text, NULL::text;
    END IF;
END;
$$;
COMMENT ON FUNCTION daemon.external_refresh_claim(bytea, integer, integer) IS
    'Claim the refresh of an external provider''s refresh token, or learn its outcome (see '
    'sql/functions/065_external_refresh.sql)';

CREATE OR REPLACE FUNCTION daemon.external_refresh_store(
    p_hash bytea, p_successor_sealed text, p_grace integer
) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE auth.external_refresh
    SET successor_sealed = p_successor_sealed,
        grace_until = daemon.now() + make_interval(secs => p_grace)
    WHERE token_hash = p_hash;
$$;
COMMENT ON FUNCTION daemon.external_refresh_store(bytea, text, integer) IS
    'The provider''s answer to a claimed refresh: its successor tokens, sealed';

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
    UPDATE auth.external_refresh SET delivered = true
    WHERE token_hash = p_hash AND NOT delivered;
$$;
COMMENT ON FUNCTION daemon.external_refresh_delivered(bytea) IS
    'A browser presented the access token this refresh produced: its response arrived, so the '
    'refresh token before it coming back after the grace is a replay';
