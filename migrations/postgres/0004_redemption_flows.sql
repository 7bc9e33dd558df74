-- guestpass directory schema, version 4 (PostgreSQL): redemptions run as flows.
--
-- An invitation redemption is a flow record (migration 0003) whose JSON
-- names the invitation it redeems and holds its passcode inline, so the
-- redemption sessions and passcodes of version 1 have no use left: they
-- are dropped (a session in progress while this runs ends; its guest opens
-- the link again). commit_batch loses their statements; everything else
-- is as migration 0003 left it.

DROP TABLE guestpass.sessions;
DROP TABLE guestpass.passcodes;

CREATE OR REPLACE FUNCTION guestpass.commit_batch(batch jsonb) RETURNS integer
    LANGUAGE plpgsql
AS $$
DECLARE
    s jsonb;
    a jsonb;
    idx integer := -1;
    affected bigint;
BEGIN
    IF jsonb_typeof(batch) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'GP002', MESSAGE = 'commit batch is not a JSON array';
    END IF;
    FOR i IN 0 .. jsonb_array_length(batch) - 1 LOOP
        idx := i;
        s := batch -> i;
        a := s -> 'a';
        CASE s ->> 'op'
        WHEN 'user_insert' THEN
            INSERT INTO guestpass.users (id, tenant_id, created_at, data, version, mail_key)
            VALUES (a ->> 0, a ->> 1, (a ->> 2)::bigint, a -> 3, 1, NULL)
            ON CONFLICT (id) DO NOTHING;
        WHEN 'user_update' THEN
            UPDATE guestpass.users
            SET created_at = (a ->> 2)::bigint, data = a -> 3, version = version + 1, mail_key = NULL
            WHERE id = a ->> 0 AND tenant_id = a ->> 1 AND version = (a ->> 4)::bigint;
        WHEN 'user_insert_mail' THEN
            INSERT INTO guestpass.users (id, tenant_id, created_at, data, version, mail_key)
            VALUES (a ->> 0, a ->> 1, (a ->> 2)::bigint, a -> 3, 1, a ->> 4)
            ON CONFLICT (id) DO NOTHING;
        WHEN 'user_update_mail' THEN
            UPDATE guestpass.users
            SET created_at = (a ->> 2)::bigint, data = a -> 3, version = version + 1, mail_key = a ->> 4
            WHERE id = a ->> 0 AND tenant_id = a ->> 1 AND version = (a ->> 5)::bigint;
        WHEN 'user_release_identities' THEN
            DELETE FROM guestpass.user_identities WHERE user_id = a ->> 0;
        WHEN 'user_claim_mail' THEN
            UPDATE guestpass.users SET mail_key = a ->> 1 WHERE id = a ->> 0;
        WHEN 'identity_insert' THEN
            INSERT INTO guestpass.user_identities (user_id, tenant_id, issuer, issuer_assigned_id)
            VALUES (a ->> 0, a ->> 1, a ->> 2, a ->> 3);
        WHEN 'invitation_insert' THEN
            INSERT INTO guestpass.invitations (id, tenant_id, ticket_expires_at, data, version)
            VALUES (a ->> 0, a ->> 1, (a ->> 2)::bigint, a -> 3, 1)
            ON CONFLICT (id) DO NOTHING;
        WHEN 'invitation_update' THEN
            UPDATE guestpass.invitations
            SET ticket_expires_at = (a ->> 2)::bigint, data = a -> 3, version = version + 1
            WHERE id = a ->> 0 AND tenant_id = a ->> 1 AND version = (a ->> 4)::bigint;
        WHEN 'throttle_insert' THEN
            INSERT INTO guestpass.throttles (tenant_id, address_key, data, version)
            VALUES (a ->> 0, a ->> 1, a -> 2, 1)
            ON CONFLICT (tenant_id, address_key) DO NOTHING;
        WHEN 'throttle_update' THEN
            UPDATE guestpass.throttles
            SET data = a -> 2, version = version + 1
            WHERE tenant_id = a ->> 0 AND address_key = a ->> 1 AND version = (a ->> 3)::bigint;
        WHEN 'flow_insert' THEN
            INSERT INTO guestpass.flows
                (id, tenant_id, handle_hash, awaiting_approval, created_at, expires_at, data, version)
            VALUES (a ->> 0, a ->> 1, a ->> 2, (a ->> 3)::boolean, (a ->> 4)::bigint, (a ->> 5)::bigint,
                a -> 6, 1)
            ON CONFLICT (id) DO NOTHING;
        WHEN 'flow_update' THEN
            UPDATE guestpass.flows
            SET awaiting_approval = (a ->> 3)::boolean, created_at = (a ->> 4)::bigint,
                expires_at = (a ->> 5)::bigint, data = a -> 6, version = version + 1
            WHERE id = a ->> 0 AND tenant_id = a ->> 1 AND handle_hash = a ->> 2
                AND version = (a ->> 7)::bigint;
        ELSE
            RAISE EXCEPTION USING ERRCODE = 'GP002', MESSAGE = 'unknown commit operation';
        END CASE;
        GET DIAGNOSTICS affected = ROW_COUNT;
        IF affected = 0 AND (s ->> 'm')::boolean THEN
            RAISE EXCEPTION USING ERRCODE = 'GP001', MESSAGE = 'precondition failed';
        END IF;
    END LOOP;
    RETURN idx + 1;
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = SQLERRM, DETAIL = 'statement ' || idx;
END;
$$;
