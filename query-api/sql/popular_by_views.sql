SELECT artwork_id, sum(views)::bigint AS score FROM view_buckets
WHERE hour_ms >= $1 GROUP BY artwork_id HAVING sum(views) > 0
ORDER BY score DESC, artwork_id COLLATE "C" LIMIT $2
