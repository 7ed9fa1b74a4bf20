-- 0004: a refresh response that never reached its client no longer ends the session.

ALTER TABLE auth.refresh_token ADD COLUMN abandoned_at timestamptz;
COMMENT ON COLUMN auth.refresh_token.abandoned_at IS
    'Set when this token, issued but never used, was replaced because its predecessor came back '
    'after the grace (a lost response). Presenting it later proves the response was not lost: '
    'two holders share the family, and the session ends as a replay';
