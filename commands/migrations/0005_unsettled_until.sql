-- Until when an attempt whose send failed may still see its event written (a request the
-- broker holds but has not yet appended or replicated): nobody takes over before, so the
-- takeover's search sees what that send wrote.
ALTER TABLE commands.idempotency_keys ADD COLUMN unsettled_until timestamptz;
