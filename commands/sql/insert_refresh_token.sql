INSERT INTO commands.refresh_tokens (token_hash, user_id, family_id, expires_at)
VALUES ($1, $2, $3, $4)
