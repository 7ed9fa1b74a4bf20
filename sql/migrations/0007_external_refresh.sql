-- 0007: refreshes at an external OpenID provider (the token handler's login.provider).
--
-- The provider's refresh tokens live only in the browser's sealed cookies. One row per refresh
-- token the token handler has presented to the provider (by its SHA-256): who is refreshing it
-- now (claimed_at), what came back (the successor tokens, sealed with the master key), whether
-- a browser has shown that it received them (delivered), and whether the provider refused it.
-- It gives an external provider's tokens the rules the gateway's own have: one refresh at a
-- time across replicas, the same successor within the grace, a lost response recovered, a
-- replay after a delivered successor ended (daemon.external_refresh_claim).

CREATE TABLE auth.external_refresh (
    token_hash       bytea PRIMARY KEY,
    claimed_at       timestamptz NOT NULL DEFAULT daemon.now(),
    successor_sealed text,
    grace_until      timestamptz,
    delivered        boolean NOT NULL DEFAULT false,
    refused          boolean NOT NULL DEFAULT false,
    expires_at       timestamptz NOT NULL
);
COMMENT ON TABLE auth.external_refresh IS
    'Refresh tokens of an external provider the token handler has used, by SHA-256: the sealed '
    'successor, for concurrent and lost-response refreshes (daemon.external_refresh_claim)';
