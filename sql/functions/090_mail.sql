-- Outgoing mail (table mail.outbox, migration 0010). One function per transition:
--
--   mail_enqueue                     -> queued, due now; NOTIFY gateway_mail wakes the senders
--                                       (delivered at commit: a sender never looks too early)
--   queued and due  --mail_claim-->     sending, leased to one sender for p_lease seconds
--                                       (FOR UPDATE SKIP LOCKED: replicas claim different rows)
--   sending, lease over --mail_claim--> sending, leased to the new claimant (its sender died)
--   sending --mail_sent-->              sent; the sealed content is dropped
--   sending --mail_failed-->            queued again after a backoff of 30 s doubling up to 1 h,
--                                       or failed: a permanent refusal, or still failing
--                                       p_give_up seconds after it was queued
--   sending --mail_release-->           queued, due now (its sender stopped before the outcome)
--   queued or failed --mail_requeue-->  queued, due now, attempts from 0, give-up time anew
--
-- attempts counts the claims (each is one try at the SMTP server). The sender's calls after a
-- claim carry the claim's uuid: once its lease has been taken over they change nothing.

CREATE OR REPLACE FUNCTION daemon.mail_enqueue(
    p_id uuid, p_kind text, p_recipient text, p_content_sealed text
) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_id IS NULL OR p_kind IS NULL OR p_kind !~ '^[a-z][a-z0-9_.-]{0,63}$'
       OR p_recipient IS NULL OR length(p_recipient) NOT BETWEEN 3 AND 512
       OR p_content_sealed IS NULL OR p_content_sealed = '' THEN
        RAISE EXCEPTION 'a message needs an id, a kind, a recipient and content'
            USING ERRCODE = 'GW002';
    END IF;
    INSERT INTO mail.outbox (id, kind, recipient, content_sealed)
    VALUES (p_id, p_kind, p_recipient, p_content_sealed);
    PERFORM pg_notify('gateway_mail', '');
    RETURN p_id;
END;
$$;
COMMENT ON FUNCTION daemon.mail_enqueue(uuid, text, text, text) IS
    'Queue a message (content sealed by the caller), due now, and wake the senders '
    '(NOTIFY gateway_mail at commit). GW002 on bad input.';

CREATE OR REPLACE FUNCTION daemon.mail_claim(p_limit integer, p_lease integer)
RETURNS TABLE (id uuid, kind text, recipient text, content_sealed text, attempts integer,
               created_at timestamptz, claim uuid)
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
        SELECT o.id FROM mail.outbox o
        WHERE (o.state = 'queued' AND o.next_attempt_at <= v_now)
           OR (o.state = 'sending' AND o.lease_until <= v_now)
        ORDER BY o.next_attempt_at, o.created_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE mail.outbox o
    SET state = 'sending', attempts = o.attempts + 1, claim = gen_random_uuid(),
        claimed_at = v_now, lease_until = v_now + make_interval(secs => p_lease)
    FROM picked
    WHERE o.id = picked.id
    RETURNING o.id, o.kind, o.recipient, o.content_sealed, o.attempts, o.created_at, o.claim;
END;
$$;
COMMENT ON FUNCTION daemon.mail_claim(integer, integer) IS
    'Lease up to p_limit due messages (queued and due, or sending with an expired lease) to the '
    'caller for p_lease seconds; rows another transaction holds are skipped. GW002 on bad input.';

CREATE OR REPLACE FUNCTION daemon.mail_sent(p_id uuid, p_claim uuid) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE mail.outbox
    SET state = 'sent', sent_at = daemon.now(), content_sealed = NULL,
        claim = NULL, lease_until = NULL
    WHERE id = p_id AND claim = p_claim AND state = 'sending';
    RETURN FOUND;
END;
$$;
COMMENT ON FUNCTION daemon.mail_sent(uuid, uuid) IS
    'The claimed message was accepted by the SMTP server (or written to a file): sent, its '
    'content dropped. False when the claim is no longer the current one.';

CREATE OR REPLACE FUNCTION daemon.mail_failed(
    p_id uuid, p_claim uuid, p_error text, p_permanent boolean, p_give_up integer
) RETURNS TABLE (state text, next_attempt_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := daemon.now();
    r mail.outbox;
BEGIN
    IF p_give_up IS NULL OR p_give_up < 0 OR p_permanent IS NULL THEN
        RAISE EXCEPTION 'give_up must be >= 0' USING ERRCODE = 'GW002';
    END IF;
    SELECT * INTO r FROM mail.outbox o
    WHERE o.id = p_id AND o.claim = p_claim AND o.state = 'sending'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_permanent OR r.queued_at + make_interval(secs => p_give_up) <= v_now THEN
        UPDATE mail.outbox o
        SET state = 'failed', failed_at = v_now, last_error = left(p_error, 500),
            claim = NULL, lease_until = NULL
        WHERE o.id = p_id;
        RETURN QUERY SELECT 'failed'::text, NULL::timestamptz;
    ELSE
        -- 30 s after the first try, doubling with each, at most an hour apart.
        r.next_attempt_at := v_now + make_interval(
            secs => least(3600, 30 * power(2, least(greatest(r.attempts, 1) - 1, 20))));
        UPDATE mail.outbox o
        SET state = 'queued', next_attempt_at = r.next_attempt_at,
            last_error = left(p_error, 500), claim = NULL, lease_until = NULL
        WHERE o.id = p_id;
        RETURN QUERY SELECT 'queued'::text, r.next_attempt_at;
    END IF;
END;
$$;
COMMENT ON FUNCTION daemon.mail_failed(uuid, uuid, text, boolean, integer) IS
    'A try of the claimed message failed: queued again after a backoff (30 s doubling up to 1 h), '
    'or failed when p_permanent or p_give_up seconds have passed since it was queued. Returns the '
    'new state and next attempt; no row when the claim is no longer the current one.';

CREATE OR REPLACE FUNCTION daemon.mail_release(p_id uuid, p_claim uuid) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE mail.outbox
    SET state = 'queued', next_attempt_at = daemon.now(), claim = NULL, lease_until = NULL
    WHERE id = p_id AND claim = p_claim AND state = 'sending';
    RETURN FOUND;
END;
$$;
COMMENT ON FUNCTION daemon.mail_release(uuid, uuid) IS
    'A sender stopping before it knew the outcome gives the message back: queued, due now';

CREATE OR REPLACE FUNCTION daemon.mail_requeue(p_id uuid) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text;
    v_count integer;
BEGIN
    IF p_id IS NULL THEN
        UPDATE mail.outbox
        SET state = 'queued', next_attempt_at = daemon.now(), queued_at = daemon.now(),
            attempts = 0, failed_at = NULL
        WHERE state = 'failed';
    ELSE
        SELECT o.state INTO v_state FROM mail.outbox o WHERE o.id = p_id FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no such message' USING ERRCODE = 'GM001';
        ELSIF v_state NOT IN ('queued', 'failed') THEN
            RAISE EXCEPTION 'the message was sent or is being sent' USING ERRCODE = 'GM002';
        END IF;
        UPDATE mail.outbox
        SET state = 'queued', next_attempt_at = daemon.now(), queued_at = daemon.now(),
            attempts = 0, failed_at = NULL
        WHERE id = p_id;
    END IF;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
        PERFORM pg_notify('gateway_mail', '');
    END IF;
    RETURN v_count;
END;
$$;
COMMENT ON FUNCTION daemon.mail_requeue(uuid) IS
    'An operator''s retry: the message p_id (queued or failed), or with NULL every failed one, '
    'queued again and due now, attempts from 0 and the give-up time counted anew; wakes the '
    'senders. Returns how many. GM001 for an unknown id, GM002 for one sent or being sent.';

CREATE OR REPLACE FUNCTION daemon.mail_outbox(p_all boolean, p_limit integer)
RETURNS TABLE (id uuid, kind text, recipient text, state text, attempts integer,
               last_error text, next_attempt_at timestamptz, created_at timestamptz,
               sent_at timestamptz, failed_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id, o.kind, o.recipient, o.state, o.attempts, o.last_error,
           CASE WHEN o.state = 'queued' THEN o.next_attempt_at END, o.created_at,
           o.sent_at, o.failed_at
    FROM mail.outbox o
    WHERE p_all OR o.state <> 'sent'
    ORDER BY o.created_at, o.id
    LIMIT p_limit;
$$;
COMMENT ON FUNCTION daemon.mail_outbox(boolean, integer) IS
    'The outbox for an operator, oldest first: messages not sent yet (queued, sending, failed), or '
    'with p_all every one housekeeping has kept; metadata only, never the content';
