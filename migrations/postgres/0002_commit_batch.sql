-- guestpass directory schema, version 2 (PostgreSQL): one commit, one call.
--
-- Records are updated in place a few times each (a redemption updates its
-- session, passcode, invitation and user): pages keep a fifth free, so an
-- update that changes no indexed column stays on its page (a HOT update)
-- instead of adding an entry to every index.

ALTER TABLE guestpass.users SET (fillfactor = 80);
ALTER TABLE guestpass.invitations SET (fillfactor = 80);
ALTER TABLE guestpass.sessions SET (fillfactor = 80);
ALTER TABLE guestpass.passcodes SET (fillfactor = 80);
ALTER TABLE guestpass.throttles SET (fillfactor = 80);
--
-- commit_batch runs the conditional statements of a whole commit in order,
-- inside the calling statement's transaction, so a commit costs the store
-- one round trip instead of one per statement plus BEGIN and COMMIT.
--
-- `batch` is a JSON array; every entry is {"op": name, "m": must_affect,
-- "a": [arguments]} and runs the statement of that name with parameter $n
-- taken from a->(n-1) (text, bigint or jsonb, as the column needs). An entry
-- with "m": true that affects no row is a failed precondition: SQLSTATE
-- GP001. Any error is raised again with its own SQLSTATE and message and
-- the detail `statement <index>` (counting from 0), so the store can name
-- the write that failed. The error aborts the caller's statement, which
-- rolls back everything the batch did.

CREATE FUNCTION guestpass.commit_batch(batch jsonb) RETURNS integer
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
        WHEN 'session_insert' THEN
            INSERT INTO guestpass.sessions (handle_hash, tenant_id, expires_at, data, version)
            VALUES (a ->> 0, a ->> 1, (a ->> 2)::bigint, a -> 3, 1)
            ON CONFLICT (handle_hash) DO NOTHING;
        WHEN 'session_update' THEN
            UPDATE guestpass.sessions
            SET expires_at = (a ->> 2)::bigint, data = a -> 3, version = version + 1
            WHERE handle_hash = a ->> 0 AND tenant_id = a ->> 1 AND version = (a ->> 4)::bigint;
        WHEN 'passcode_insert' THEN
            INSERT INTO guestpass.passcodes (id, expires_at, data, version)
            VALUES (a ->> 0, (a ->> 1)::bigint, a -> 2, 1)
            ON CONFLICT (id) DO NOTHING;
        WHEN 'passcode_update' THEN
            UPDATE guestpass.passcodes
            SET expires_at = (a ->> 1)::bigint, data = a -> 2, version = version + 1
            WHERE id = a ->> 0 AND version = (a ->> 3)::bigint;
        WHEN 'throttle_insert' THEN
            INSERT INTO guestpass.throttles (tenant_id, address_key, data, version)
            VALUES (a ->> 0, a ->> 1, a -> 2, 1)
            ON CONFLICT (tenant_id, address_key) DO NOTHING;
        WHEN 'throttle_update' THEN
            UPDATE guestpass.throttles
            SET data = a -> 2, version = version + 1
            WHERE tenant_id = a ->> 0 AND address_key = a ->> 1 AND version = (a ->> 3)::bigint;
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
