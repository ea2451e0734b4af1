UPDATE comments c SET deleted = true, deleted_by = d.by, deleted_at_ms = d.at
FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS d(id, by, at)
WHERE c.comment_id = d.id AND NOT c.deleted
