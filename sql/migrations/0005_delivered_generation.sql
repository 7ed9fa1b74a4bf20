-- 0005: which generation of a family's tokens has reached its browser.

ALTER TABLE auth.token_family ADD COLUMN delivered_generation integer NOT NULL DEFAULT 0;
-- Families from before: count their current tokens as delivered (no recovery for them).
UPDATE auth.token_family SET delivered_generation = generation;
COMMENT ON COLUMN auth.token_family.delivered_generation IS
    'The newest generation whose access token a browser has presented to a token handler: that '
    'response reached the browser, so the token before it coming back is a replay, never a lost '
    'response (daemon.refresh_token, daemon.family_delivered)';
