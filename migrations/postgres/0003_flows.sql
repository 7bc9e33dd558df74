-- guestpass directory schema, version 3 (PostgreSQL): self-service sign-up flows.
--
-- A flow is keyed by its id and by the hash of the opaque handle the browser
-- holds (unique across flows). `awaiting_approval` mirrors whether the
-- record's state awaits an administrator, for the tenant's approval queue;
-- `created_at` orders that queue; `expires_at` (rounded up) is what a purge
-- deletes by. Timestamps are unix microseconds. A flow is updated in place at
-- every step, so its pages keep a fifth free, as the other tables' do.

CREATE TABLE guestpass.flows (
    id                TEXT    NOT NULL PRIMARY KEY,
    tenant_id         TEXT    NOT NULL,
    handle_hash       TEXT    NOT NULL,
    version           BIGINT  NOT NULL,
    awaiting_approval BOOLEAN NOT NULL,
    created_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    data              JSONB   NOT NULL,
    CONSTRAINT flows_handle_hash UNIQUE (handle_hash)
) WITH (fillfactor = 80);

-- The approval queue of a tenant, oldest first.
CREATE INDEX flows_tenant_awaiting ON guestpass.flows (tenant_id, awaiting_approval, created_at, id);

CREATE INDEX flows_expires_at ON guestpass.flows (expires_at);

-- commit_batch (migration 0002) learns the flow statements: `flow_insert`
-- and `flow_update`, with the arguments of the store's FLOW_INSERT and
-- FLOW_UPDATE. Everything else, the batch format and the error conventions
-- (GP001 for a failed precondition, GP002 for a malformed batch, the detail
-- `statement <index>` on every error) are as they were.

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
