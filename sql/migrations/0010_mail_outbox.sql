-- 0010: the mail outbox (issue 12). Numbered 0010 on purpose: 0008 and 0009 belong to other work
-- in progress; the runner applies whatever is missing in order and does not need contiguous
-- numbers. This file depends on nothing newer than 0007.
--
-- Every outgoing message (an invitation, a recovery link) is a row here before anything is
-- sent: queued in the transaction of whatever caused it, then claimed by one sender at a time
-- (a lease), sent, or retried with a backoff, or given up on (state failed, kept for an
-- operator). An SMTP outage delays a message; it never loses one.
--
-- The content (subject, text, HTML, extra headers) carries single-use links, so it is stored
-- sealed with the master key, bound to the row's id and recipient, and dropped once the message
-- is sent; the metadata stays until housekeeping deletes it.

CREATE SCHEMA IF NOT EXISTS mail;
COMMENT ON SCHEMA mail IS 'Outgoing email: the outbox';

CREATE TABLE mail.outbox (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    recipient       text NOT NULL CHECK (length(recipient) BETWEEN 3 AND 512),
    content_sealed  text,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT daemon.now(),
    queued_at       timestamptz NOT NULL DEFAULT daemon.now(),
    created_at      timestamptz NOT NULL DEFAULT daemon.now(),
    claim           uuid,
    claimed_at      timestamptz,
    lease_until     timestamptz,
    sent_at         timestamptz,
    failed_at       timestamptz,
    CONSTRAINT outbox_content_until_sent CHECK ((state = 'sent') = (content_sealed IS NULL)),
    CONSTRAINT outbox_sending_is_leased
        CHECK (state <> 'sending' OR (claim IS NOT NULL AND lease_until IS NOT NULL))
);
CREATE INDEX outbox_due ON mail.outbox (next_attempt_at) WHERE state = 'queued';
CREATE INDEX outbox_leases ON mail.outbox (lease_until) WHERE state = 'sending';
CREATE INDEX outbox_sent ON mail.outbox (sent_at) WHERE state = 'sent';
CREATE INDEX outbox_open ON mail.outbox (created_at) WHERE state <> 'sent';
COMMENT ON TABLE mail.outbox IS
    'Outgoing messages: queued, sending (leased to one sender until lease_until), sent or failed. '
    'content_sealed is the message sealed with the master key (bound to id and recipient), NULL '
    'once sent. queued_at is when it was queued or last requeued: the give-up time counts from it';
COMMENT ON COLUMN mail.outbox.claim IS
    'Names the current lease; a sender''s mail_sent/mail_failed/mail_release carry it, so a sender '
    'whose lease was taken over changes nothing';
