INSERT INTO commands.comments (comment_id, artwork_id, author_id)
VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
