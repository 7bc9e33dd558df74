-- guestpass directory schema, version 4 (SQLite): redemptions run as flows.
--
-- An invitation redemption is a flow record (migration 0003) whose JSON
-- names the invitation it redeems and holds its passcode inline, so the
-- redemption sessions and passcodes of version 1 have no use left: they
-- are dropped (a session in progress while this runs ends; its guest opens
-- the link again).

DROP TABLE sessions;
DROP TABLE passcodes;
