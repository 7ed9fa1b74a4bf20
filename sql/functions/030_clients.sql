CREATE OR REPLACE FUNCTION daemon.client_sync(p_clients jsonb)
RETURNS TABLE (added integer, updated integer, disabled integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c jsonb;
    v_old oauth2.client%ROWTYPE;
    v_new oauth2.client%ROWTYPE;
BEGIN
    IF jsonb_typeof(p_clients) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'clients must be a JSON array' USING ERRCODE = 'GW002';
    END IF;
    added := 0; updated := 0; disabled := 0;
    FOR c IN SELECT value FROM jsonb_array_elements(p_clients) LOOP
        v_new.client_id := c->>'client_id';
        v_new.provider := coalesce(c->>'provider', 'default');
        v_new.app := c->>'app';
        v_new.secret_hash := c->>'secret_hash';
        v_new.public := (c->>'secret_hash') IS NULL;
        v_new.grant_types := ARRAY(SELECT jsonb_array_elements_text(coalesce(c->'grant_types', '[]')));
        v_new.redirect_uris := ARRAY(SELECT jsonb_array_elements_text(coalesce(c->'redirect_uris', '[]')));
        v_new.javascript_origins := ARRAY(SELECT jsonb_array_elements_text(coalesce(c->'javascript_origins', '[]')));
        v_new.scopes := ARRAY(SELECT jsonb_array_elements_text(coalesce(c->'scopes', '[]')));
        v_new.settings := coalesce(c->'settings', '{}');
        IF v_new.client_id IS NULL OR v_new.app IS NULL THEN
            RAISE EXCEPTION 'each client needs client_id and app' USING ERRCODE = 'GW002';
        END IF;

        SELECT * INTO v_old FROM oauth2.client WHERE client_id = v_new.client_id FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO oauth2.client (client_id, provider, app, secret_hash, public, grant_types,
                                       redirect_uris, javascript_origins, scopes, settings)
            VALUES (v_new.client_id, v_new.provider, v_new.app, v_new.secret_hash, v_new.public,
                    v_new.grant_types, v_new.redirect_uris, v_new.javascript_origins, v_new.scopes,
                    v_new.settings);
            added := added + 1;
            PERFORM daemon.audit('client.add', NULL, v_new.client_id, NULL, NULL,
                                 jsonb_build_object('app', v_new.app, 'provider', v_new.provider));
        ELSIF (v_old.provider, v_old.app, v_old.secret_hash, v_old.public, v_old.grant_types,
               v_old.redirect_uris, v_old.javascript_origins, v_old.scopes, v_old.settings, v_old.enabled)
              IS DISTINCT FROM
              (v_new.provider, v_new.app, v_new.secret_hash, v_new.public, v_new.grant_types,
               v_new.redirect_uris, v_new.javascript_origins, v_new.scopes, v_new.settings, true) THEN
            UPDATE oauth2.client SET
                provider = v_new.provider, app = v_new.app, secret_hash = v_new.secret_hash,
                public = v_new.public, grant_types = v_new.grant_types,
                redirect_uris = v_new.redirect_uris, javascript_origins = v_new.javascript_origins,
                scopes = v_new.scopes, settings = v_new.settings, enabled = true, updated_at = daemon.now()
            WHERE client_id = v_new.client_id;
            updated := updated + 1;
            -- Which settings changed, by name (never a value: secret_hash is one).
            PERFORM daemon.audit('client.update', NULL, v_new.client_id, NULL, NULL,
                jsonb_build_object('app', v_new.app, 'changed', to_jsonb(ARRAY(
                    SELECT n FROM (VALUES
                        ('provider', v_old.provider IS DISTINCT FROM v_new.provider),
                        ('app', v_old.app IS DISTINCT FROM v_new.app),
                        ('secret', v_old.secret_hash IS DISTINCT FROM v_new.secret_hash),
                        ('grant_types', v_old.grant_types IS DISTINCT FROM v_new.grant_types),
                        ('redirect_uris', v_old.redirect_uris IS DISTINCT FROM v_new.redirect_uris),
                        ('javascript_origins',
                         v_old.javascript_origins IS DISTINCT FROM v_new.javascript_origins),
                        ('scopes', v_old.scopes IS DISTINCT FROM v_new.scopes),
                        ('settings', v_old.settings IS DISTINCT FROM v_new.settings),
                        ('enabled', NOT v_old.enabled)) AS d(n, differs)
                    WHERE differs))));
        END IF;
    END LOOP;

    FOR v_old IN
        UPDATE oauth2.client SET enabled = false, updated_at = daemon.now()
        WHERE enabled
          AND client_id NOT IN (SELECT value->>'client_id' FROM jsonb_array_elements(p_clients))
        RETURNING *
    LOOP
        PERFORM daemon.audit('client.disable', NULL, v_old.client_id, NULL, NULL,
                             jsonb_build_object('app', v_old.app));
        disabled := disabled + 1;
    END LOOP;
    RETURN NEXT;
END;
$$;
COMMENT ON FUNCTION daemon.client_sync(jsonb) IS
    'Make oauth2.client match the configured clients: insert new ones, update changed ones, '
    'disable removed ones (kept for the sessions that reference them). Secrets arrive hashed. '
    'Each change is audited: client.add, client.update (detail.changed names the settings), '
    'client.disable.';
