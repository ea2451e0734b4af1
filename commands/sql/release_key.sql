DELETE FROM commands.idempotency_keys
WHERE user_id = $1 AND key = $2 AND attempt = $3 AND response IS NULL
