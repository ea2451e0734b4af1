UPDATE commands.idempotency_keys
SET topic = $4, message_key = $5, payload = $6, result_id = $7,
    decided_at = now(), expires_at = now() + make_interval(secs => $8)
WHERE user_id = $1 AND key = $2 AND attempt = $3
  AND response IS NULL AND payload IS NULL
