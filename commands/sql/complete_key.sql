UPDATE commands.idempotency_keys SET response = $4
WHERE user_id = $1 AND key = $2 AND attempt = $3
