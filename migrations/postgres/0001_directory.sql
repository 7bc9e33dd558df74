-- guestpass directory schema, version 1 (PostgreSQL).
--
-- Every table keeps the record itself as JSON in `data` (serde_json of the
-- model record) plus the key columns the store looks records up by, and the
-- record's `version` (1 after insert, one more after every update).
-- Timestamps are unix microseconds (BIGINT); ids are GUID text; digests are
-- lowercase hex.

CREATE TABLE users (
    id         TEXT   NOT NULL PRIMARY KEY,
    tenant_id  TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    -- comparison key of the user's mail; NULL when the user has none
    mail_key   TEXT,
    -- createdDateTime, for listing
    created_at BIGINT NOT NULL,
    data       JSONB  NOT NULL,
    CONSTRAINT users_tenant_mail_key UNIQUE (tenant_id, mail_key)
);

CREATE INDEX users_tenant_created ON users (tenant_id, created_at, id);

-- One row per identity of a user: (tenant, issuer, issuerAssignedId) is
-- unique across users.
CREATE TABLE user_identities (
    tenant_id          TEXT NOT NULL,
    issuer             TEXT NOT NULL,
    issuer_assigned_id TEXT NOT NULL,
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, issuer, issuer_assigned_id)
);

CREATE INDEX user_identities_user ON user_identities (user_id);

CREATE TABLE invitations (
    id                TEXT   NOT NULL PRIMARY KEY,
    tenant_id         TEXT   NOT NULL,
    version           BIGINT NOT NULL,
    -- expiry of the invitation's ticket binding; NULL when it has none
    ticket_expires_at BIGINT,
    data              JSONB  NOT NULL
);

CREATE INDEX invitations_ticket_expires_at ON invitations (ticket_expires_at)
    WHERE ticket_expires_at IS NOT NULL;

CREATE TABLE sessions (
    handle_hash TEXT   NOT NULL PRIMARY KEY,
    tenant_id   TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    data        JSONB  NOT NULL
);

CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE passcodes (
    id         TEXT   NOT NULL PRIMARY KEY,
    version    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    data       JSONB  NOT NULL
);

CREATE INDEX passcodes_expires_at ON passcodes (expires_at);

CREATE TABLE throttles (
    tenant_id   TEXT   NOT NULL,
    address_key TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    data        JSONB  NOT NULL,
    PRIMARY KEY (tenant_id, address_key)
);
