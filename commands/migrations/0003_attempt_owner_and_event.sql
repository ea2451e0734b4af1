-- An attempt's owner (the lease of its process) and deadline, and the event it decided
-- (the exact message, stored before it is sent, so that a takeover can look for those
-- bytes in the log, and send them if they are not there) with the id of what it created.
ALTER TABLE commands.idempotency_keys
    ADD COLUMN owner       integer,
    ADD COLUMN attempt     uuid,
    ADD COLUMN expires_at  timestamptz,
    ADD COLUMN topic       text,
    ADD COLUMN message_key text,
    ADD COLUMN payload     bytea,
    ADD COLUMN result_id   text;
