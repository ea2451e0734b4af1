SELECT artwork_id, sum(net_likes)::bigint AS score FROM like_buckets
WHERE hour_ms >= $1 GROUP BY artwork_id HAVING sum(net_likes) > 0
ORDER BY score DESC, artwork_id COLLATE "C" LIMIT $2
