CREATE OR REPLACE FUNCTION daemon.housekeep(p_keep integer, p_audit_days integer, p_batch integer)
RETURNS TABLE (kind text, deleted bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before timestamptz := daemon.now() - make_interval(secs => p_keep);
BEGIN
    IF p_keep IS NULL OR p_keep < 0 OR p_audit_days IS NULL OR p_audit_days < 0
       OR p_batch IS NULL OR p_batch < 1 THEN
        RAISE EXCEPTION 'keep and audit days must be >= 0, batch >= 1' USING ERRCODE = 'GW002';
    END IF;
    -- One housekeeper at a time across every gateway process and replica; the others skip.
    IF NOT pg_try_advisory_xact_lock(hashtext('gateway.housekeep')) THEN
        RETURN;
    END IF;
    -- Sessions over (expired or revoked) for longer than p_keep, with their codes, token
    -- families and refresh tokens (ON DELETE CASCADE).
    -- (Each condition is repeated outside the subquery: a row changed while the DELETE waited
    -- for its lock is checked again, not deleted on the strength of its old version.)
    DELETE FROM auth.session WHERE id IN (
        SELECT id FROM auth.session
        WHERE expires_at < v_before OR revoked_at < v_before
        LIMIT p_batch)
      AND (expires_at < v_before OR revoked_at < v_before);
    kind := 'sessions'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- Grants over in a session that lives on (a revoked or expired token family).
    DELETE FROM auth.token_family WHERE id IN (
        SELECT id FROM auth.token_family
        WHERE expires_at < v_before OR revoked_at < v_before
        LIMIT p_batch)
      AND (expires_at < v_before OR revoked_at < v_before);
    kind := 'token families'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- Current refresh tokens past their own expiry (refused anyway). Superseded ones stay with
    -- their family: presenting one again is a replay that must still end the session.
    DELETE FROM auth.refresh_token WHERE token_hash IN (
        SELECT token_hash FROM auth.refresh_token
        WHERE expires_at < v_before AND superseded_at IS NULL
        LIMIT p_batch)
      AND expires_at < v_before AND superseded_at IS NULL;
    kind := 'refresh tokens'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- Codes past their lifetime (a used code presented again after this is simply unknown).
    DELETE FROM auth.code WHERE code_hash IN (
        SELECT code_hash FROM auth.code WHERE expires_at < v_before LIMIT p_batch)
      AND expires_at < v_before;
    kind := 'codes'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- JWT bearer assertion ids: an expired assertion is refused before its jti is looked at.
    DELETE FROM auth.assertion WHERE (issuer, jti) IN (
        SELECT issuer, jti FROM auth.assertion WHERE expires_at < v_before LIMIT p_batch)
      AND expires_at < v_before;
    kind := 'assertions'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- An external provider's refresh tokens the token handler has used, once over.
    DELETE FROM auth.external_refresh WHERE token_hash IN (
        SELECT token_hash FROM auth.external_refresh WHERE expires_at < v_before LIMIT p_batch)
      AND expires_at < v_before;
    kind := 'external refreshes'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- Sessions at an external provider, over (expired or ended) for longer than the keep.
    DELETE FROM auth.external_session WHERE id IN (
        SELECT id FROM auth.external_session
        WHERE least(ended_at, expires_at) < v_before LIMIT p_batch);
    kind := 'external sessions'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- Failed-attempt counters that have been quiet and unlocked for p_keep.
    DELETE FROM auth.throttle WHERE key IN (
        SELECT key FROM auth.throttle
        WHERE last_failure_at < v_before AND (locked_until IS NULL OR locked_until < v_before)
        LIMIT p_batch)
      AND last_failure_at < v_before AND (locked_until IS NULL OR locked_until < v_before);
    kind := 'throttle counters'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- Messages sent longer ago than p_keep (their content went when they were sent; this is the
    -- metadata). Failed ones stay for an operator to see and requeue.
    DELETE FROM mail.outbox WHERE id IN (
        SELECT id FROM mail.outbox WHERE state = 'sent' AND sent_at < v_before LIMIT p_batch)
      AND state = 'sent' AND sent_at < v_before;
    kind := 'sent mails'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- Back-channel logouts delivered (or skipped: no URI) longer ago than p_keep. Failed ones
    -- stay for an operator to see.
    DELETE FROM auth.backchannel_logout WHERE id IN (
        SELECT id FROM auth.backchannel_logout
        WHERE (state = 'sent' AND sent_at < v_before) OR (state = 'skipped' AND failed_at < v_before)
        LIMIT p_batch)
      AND ((state = 'sent' AND sent_at < v_before) OR (state = 'skipped' AND failed_at < v_before));
    kind := 'back-channel logouts'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- Account links (verify an email, reset a password) used or expired longer ago than p_keep.
    DELETE FROM auth.account_token WHERE id IN (
        SELECT id FROM auth.account_token
        WHERE least(used_at, expires_at) < v_before LIMIT p_batch)
      AND least(used_at, expires_at) < v_before;
    kind := 'account links'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    -- Self-registered accounts never verified, whose last link ran out longer ago than p_keep
    -- (their user names are free again).
    DELETE FROM auth.users WHERE id IN (
        SELECT u.id FROM auth.users u
        WHERE u.pending_verification AND u.created_at < v_before
          AND NOT EXISTS (SELECT 1 FROM auth.account_token t
                          WHERE t.user_id = u.id AND t.expires_at >= v_before)
        LIMIT p_batch)
      AND pending_verification;
    kind := 'pending accounts'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    IF p_audit_days > 0 THEN
        DELETE FROM audit.event WHERE id IN (
            SELECT id FROM audit.event WHERE at < daemon.now() - make_interval(days => p_audit_days)
            LIMIT p_batch);  -- events never change
        kind := 'audit events'; GET DIAGNOSTICS deleted = ROW_COUNT; RETURN NEXT;
    END IF;
END;
$$;
COMMENT ON FUNCTION daemon.housekeep(integer, integer, integer) IS
    'Delete what is over for longer than p_keep seconds (sessions with their grants, token families, '
    'current refresh tokens, codes, assertion ids, throttle counters, sent mails, delivered or '
    'skipped back-channel logouts, account links, '
    'self-registered accounts never verified) and audit events older than '
    'p_audit_days (0 keeps them), at most p_batch rows of each per call. Returns the rows deleted '
    'by kind, or nothing when another housekeeper holds the lock. GW002 on bad arguments.';
