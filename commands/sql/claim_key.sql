INSERT INTO commands.idempotency_keys
    (user_id, key, request_hash, owner, attempt, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
ON CONFLICT DO NOTHING
