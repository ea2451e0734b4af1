SELECT user_id, cancelled FROM commands.generations
WHERE request_id = $1 FOR UPDATE
