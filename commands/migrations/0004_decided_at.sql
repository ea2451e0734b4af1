-- When an attempt stored its decided event (before sending it; a takeover keeps it): a
-- takeover looks for the event in the log from then on.
ALTER TABLE commands.idempotency_keys ADD COLUMN decided_at timestamptz;
