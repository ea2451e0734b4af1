INSERT INTO like_buckets (hour_ms, artwork_id, net_likes)
SELECT h, a, d FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS x(a, h, d)
ORDER BY h, a
ON CONFLICT (hour_ms, artwork_id)
DO UPDATE SET net_likes = like_buckets.net_likes + excluded.net_likes
