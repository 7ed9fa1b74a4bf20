-- Brute-force throttling, two ways.
-- Passwords (slow argon2, low entropy): an attempt is counted BEFORE the caller checks the
-- credentials (daemon.throttle_attempt), so parallel guesses cannot all slip in before the first
-- failure is recorded; a success then forgets the account's count and refunds the address's
-- attempt (daemon.throttle_success).
-- Client secrets and session secrets (high entropy, checked in microseconds): only a failure is
-- counted (daemon.throttle_check before, daemon.throttle_failure after), so a client's own
-- parallel requests are never refused and its successes never reset a guesser's count.

DROP FUNCTION IF EXISTS daemon.throttle_fail(text[], integer[], integer);
DROP FUNCTION IF EXISTS daemon.throttle_clear(text[]);
-- The address and User-Agent of the attempt came later (audit of locks): replace, not amend.
DROP FUNCTION IF EXISTS daemon.throttle_failure(text[], integer[], integer);
DROP FUNCTION IF EXISTS daemon.throttle_attempt(text[], integer[], integer);

CREATE OR REPLACE FUNCTION daemon.throttle_failure(
    p_keys text[], p_thresholds integer[], p_base_seconds integer,
    p_ip inet DEFAULT NULL, p_user_agent text DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i integer;
    v_failures integer;
    v_locked_until timestamptz;
    v_seconds integer;
BEGIN
    IF array_length(p_keys, 1) IS DISTINCT FROM array_length(p_thresholds, 1) THEN
        RAISE EXCEPTION 'one threshold per key' USING ERRCODE = 'GW002';
    END IF;
    -- Keys in order, so concurrent callers queue instead of deadlocking.
    FOR i IN SELECT ord FROM unnest(p_keys) WITH ORDINALITY AS k(key, ord) ORDER BY key LOOP
        INSERT INTO auth.throttle AS t (key, failures, last_failure_at)
        VALUES (p_keys[i], 1, daemon.now())
        ON CONFLICT (key) DO UPDATE SET
            -- A quiet hour forgives earlier failures.
            failures = CASE WHEN t.last_failure_at < daemon.now() - interval '1 hour' THEN 1
                            ELSE t.failures + 1 END,
            last_failure_at = daemon.now()
        RETURNING failures, locked_until INTO v_failures, v_locked_until;
        IF v_failures >= p_thresholds[i] THEN
            v_seconds := least(p_base_seconds * power(2, least(v_failures - p_thresholds[i], 12)), 3600);
            UPDATE auth.throttle SET locked_until = daemon.now() + make_interval(secs => v_seconds)
            WHERE key = p_keys[i];
            -- Audited when the key becomes locked (not at each extension of a lock).
            IF v_locked_until IS NULL OR v_locked_until <= daemon.now() THEN
                IF p_ip IS NOT NULL OR p_user_agent IS NOT NULL THEN
                    PERFORM daemon.audit_context(NULL, p_ip, p_user_agent);
                END IF;
                PERFORM daemon.audit('throttle.lock', NULL, NULL, NULL, p_ip,
                    jsonb_build_object('key', daemon.throttle_key_shown(p_keys[i]),
                                       'failures', v_failures, 'seconds', v_seconds));
            END IF;
        END IF;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION daemon.throttle_failure(text[], integer[], integer, inet, text) IS
    'Count a failure for each key; the failure that reaches a key''s threshold locks it for '
    'base * 2^(excess) seconds, at most an hour (audited as throttle.lock with p_ip and '
    'p_user_agent when the key was not locked).';

CREATE OR REPLACE FUNCTION daemon.throttle_key_shown(p_key text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- An account key holds the name as typed: kept when it names an account, else only its
    -- length (a password typed into the name field must not reach the audit or a SIEM).
    SELECT CASE
        WHEN p_key NOT LIKE 'acct:%' THEN p_key
        WHEN EXISTS (SELECT 1 FROM auth.users u
                     WHERE lower(u.username) = substr(p_key, 6) OR lower(u.email) = substr(p_key, 6))
            THEN p_key
        ELSE 'acct:(an unknown name of ' || length(p_key) - 5 || ' characters)'
    END;
$$;
COMMENT ON FUNCTION daemon.throttle_key_shown(text) IS
    'A throttle key as the audit shows it: an account key only when it names an account';

CREATE OR REPLACE FUNCTION daemon.throttle_check(p_keys text[])
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(max(ceil(extract(epoch FROM t.locked_until - daemon.now())))::integer, 0)
    FROM auth.throttle t
    WHERE t.key = ANY (p_keys) AND t.locked_until > daemon.now();
$$;
COMMENT ON FUNCTION daemon.throttle_check(text[]) IS
    'Seconds until the last of these keys is unlocked, 0 when none is locked (reads only)';

CREATE OR REPLACE FUNCTION daemon.throttle_guard(p_keys text[])
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_wait integer := daemon.throttle_check(p_keys);
BEGIN
    IF v_wait > 0 THEN
        RAISE EXCEPTION 'throttled' USING ERRCODE = 'GT001', DETAIL = v_wait::text;
    END IF;
    RETURN true;
END;
$$;
COMMENT ON FUNCTION daemon.throttle_guard(text[]) IS
    'daemon.throttle_check as the first step of a grant''s function (daemon.login, '
    'daemon.refresh_token: p_guard): raises GT001 with the seconds to wait as DETAIL when a key '
    'is locked, so a client''s correct secret is refused during its lock without a statement of '
    'its own (issue 13: one round trip per grant).';

CREATE OR REPLACE FUNCTION daemon.throttle_attempt(
    p_keys text[], p_thresholds integer[], p_base_seconds integer,
    p_ip inet DEFAULT NULL, p_user_agent text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i integer;
    v_row auth.throttle%ROWTYPE;
    v_wait integer := 0;
BEGIN
    IF array_length(p_keys, 1) IS DISTINCT FROM array_length(p_thresholds, 1) THEN
        RAISE EXCEPTION 'one threshold per key' USING ERRCODE = 'GW002';
    END IF;
    -- Rows are locked in key order, so concurrent attempts queue instead of deadlocking.
    FOR i IN SELECT ord FROM unnest(p_keys) WITH ORDINALITY AS k(key, ord) ORDER BY key LOOP
        INSERT INTO auth.throttle (key, failures, last_failure_at) VALUES (p_keys[i], 0, daemon.now())
        ON CONFLICT (key) DO NOTHING;
        SELECT * INTO v_row FROM auth.throttle WHERE key = p_keys[i] FOR UPDATE;
        IF v_row.locked_until > daemon.now() THEN
            v_wait := greatest(v_wait, ceil(extract(epoch FROM v_row.locked_until - daemon.now()))::integer);
        END IF;
    END LOOP;
    IF v_wait > 0 THEN
        RETURN v_wait;  -- refused: not counted, the caller must not check the credentials
    END IF;
    PERFORM daemon.throttle_failure(p_keys, p_thresholds, p_base_seconds, p_ip, p_user_agent);
    RETURN 0;
END;
$$;
COMMENT ON FUNCTION daemon.throttle_attempt(text[], integer[], integer, inet, text) IS
    'Count an attempt for each key (account, address, client), or refuse it: the seconds to wait '
    'when a key is locked (nothing counted), else 0. The attempt that reaches a key''s threshold '
    'locks it for base * 2^(excess) seconds, at most an hour; the lock applies to later attempts.';

CREATE OR REPLACE FUNCTION daemon.throttle_success(
    p_clear text[], p_refund text[], p_thresholds integer[]
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k record;
BEGIN
    -- Same key order as daemon.throttle_attempt, so the two never deadlock.
    FOR k IN
        SELECT key, false AS refund, NULL::integer AS threshold FROM unnest(p_clear) AS key
        UNION ALL
        SELECT r.key, true, r.threshold
        FROM unnest(p_refund, p_thresholds) AS r(key, threshold)
        ORDER BY 1
    LOOP
        IF k.refund THEN
            UPDATE auth.throttle AS t SET
                failures = greatest(t.failures - 1, 0),
                locked_until = CASE WHEN t.failures - 1 < k.threshold THEN NULL
                                    ELSE t.locked_until END
            WHERE t.key = k.key;
        ELSE
            DELETE FROM auth.throttle WHERE key = k.key;
        END IF;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION daemon.throttle_success(text[], text[], integer[]) IS
    'After a success: forget the p_clear keys (the account) and take the attempt back from the '
    'p_refund keys (the address), unlocking them when they fall below their threshold.';
