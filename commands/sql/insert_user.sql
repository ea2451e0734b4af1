INSERT INTO commands.users (user_id, display_name, password_hash, role)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
