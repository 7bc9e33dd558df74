-- guestpass directory schema, version 3 (SQLite): self-service sign-up flows.
--
-- (SQLite has no version 2: that PostgreSQL migration installed a server-side
-- function only. The versions of both dialects name the same schema.)
--
-- A flow is keyed by its id and by the hash of the opaque handle the browser
-- holds (unique across flows). `awaiting_approval` (0 or 1) mirrors whether
-- the record's state awaits an administrator, for the tenant's approval
-- queue; `created_at` orders that queue; `expires_at` (rounded up) is what a
-- purge deletes by. Timestamps are unix microseconds.

CREATE TABLE flows (
    id                TEXT    NOT NULL PRIMARY KEY,
    tenant_id         TEXT    NOT NULL,
    handle_hash       TEXT    NOT NULL,
    version           INTEGER NOT NULL,
    awaiting_approval INTEGER NOT NULL CHECK (awaiting_approval IN (0, 1)),
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    data              TEXT    NOT NULL,
    CONSTRAINT flows_handle_hash UNIQUE (handle_hash)
);

-- The approval queue of a tenant, oldest first.
CREATE INDEX flows_tenant_awaiting ON flows (tenant_id, awaiting_approval, created_at, id);

CREATE INDEX flows_expires_at ON flows (expires_at);
