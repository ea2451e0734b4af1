UPDATE commands.idempotency_keys
SET owner = NULL, unsettled_until = now() + make_interval(secs => $4)
WHERE user_id = $1 AND key = $2 AND attempt = $3 AND response IS NULL
