-- The SIEM output (audit.log) follows the audit by transaction, not by id (issue 14 review):
-- an id is taken when the event is inserted, but its transaction may commit long after a later
-- one, so "every id up to N" is never final. Each event now records the transaction that wrote
-- it; daemon.audit_emit writes only events of transactions older than every one still running
-- (pg_snapshot_xmin), in (xid, id) order, so no event can appear behind the cursor.
ALTER TABLE audit.event ADD COLUMN IF NOT EXISTS xid xid8;
ALTER TABLE audit.event ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
COMMENT ON COLUMN audit.event.xid IS
    'The transaction that wrote the event (NULL before migration 0014): the SIEM output''s order';
CREATE INDEX IF NOT EXISTS event_xid_idx ON audit.event (xid, id) WHERE xid IS NOT NULL;

-- The cursor moves by (transaction, id). A cursor placed before this migration goes on from the
-- transactions after it; earlier events without an xid were written by the old cursor.
ALTER TABLE audit.log_cursor ADD COLUMN IF NOT EXISTS last_xid xid8;
UPDATE audit.log_cursor SET last_xid = pg_current_xact_id(), last_id = 0 WHERE last_xid IS NULL;
ALTER TABLE audit.log_cursor ALTER COLUMN last_xid SET NOT NULL;
COMMENT ON TABLE audit.log_cursor IS
    'How far the audit log has been written to the process log (audit.log: true) by any gateway '
    'process: the last event''s transaction and id';
