SELECT c.comment_id, c.artwork_id, c.deleted
FROM unnest($1::uuid[]) AS k(id)
CROSS JOIN LATERAL (
    SELECT comment_id, artwork_id, deleted FROM comments WHERE comment_id = k.id
    FOR UPDATE
) c
