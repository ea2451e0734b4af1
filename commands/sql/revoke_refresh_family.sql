UPDATE commands.refresh_tokens SET revoked = true
WHERE family_id = $1 AND NOT revoked
