UPDATE commands.idempotency_keys SET owner = NULL
WHERE user_id = $1 AND key = $2 AND attempt = $3 AND response IS NULL
