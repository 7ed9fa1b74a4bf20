CREATE OR REPLACE FUNCTION daemon.throttle_check(p_keys text[])
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(max(ceil(extract(epoch FROM locked_until - now())))::integer, 0)
    FROM auth.throttle
    WHERE key = ANY (p_keys) AND locked_until > now();
$$;
COMMENT ON FUNCTION daemon.throttle_check(text[]) IS
    'Seconds until the most locked of these keys may try again (0: not throttled)';

CREATE OR REPLACE FUNCTION daemon.throttle_fail(
    p_keys text[], p_thresholds integer[], p_base_seconds integer
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i integer;
    v_failures integer;
    v_wait integer := 0;
    v_lock integer;
BEGIN
    IF array_length(p_keys, 1) IS DISTINCT FROM array_length(p_thresholds, 1) THEN
        RAISE EXCEPTION 'one threshold per key' USING ERRCODE = 'GW002';
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        INSERT INTO auth.throttle AS t (key, failures, last_failure_at)
        VALUES (p_keys[i], 1, now())
        ON CONFLICT (key) DO UPDATE SET
            -- A quiet hour forgives earlier failures.
            failures = CASE WHEN t.last_failure_at < now() - interval '1 hour' THEN 1
                            ELSE t.failures + 1 END,
            last_failure_at = now()
        RETURNING failures INTO v_failures;
        IF v_failures >= p_thresholds[i] THEN
            v_lock := least(p_base_seconds * power(2, least(v_failures - p_thresholds[i], 12)), 3600)::integer;
            UPDATE auth.throttle SET locked_until = now() + make_interval(secs => v_lock)
            WHERE key = p_keys[i];
            v_wait := greatest(v_wait, v_lock);
        END IF;
    END LOOP;
    RETURN v_wait;
END;
$$;
COMMENT ON FUNCTION daemon.throttle_fail(text[], integer[], integer) IS
    'Count a failure for each key; past its threshold a key is locked for base * 2^(excess) seconds '
    '(at most an hour). Returns the longest lock now in force.';

CREATE OR REPLACE FUNCTION daemon.throttle_clear(p_keys text[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM auth.throttle WHERE key = ANY (p_keys);
$$;
COMMENT ON FUNCTION daemon.throttle_clear(text[]) IS 'Forget failures after a success';
