SELECT artwork_id, author_id, deleted FROM commands.comments
WHERE comment_id = $1 FOR UPDATE
