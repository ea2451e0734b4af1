INSERT INTO view_buckets (hour_ms, artwork_id, views)
SELECT h, a, d FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS x(a, h, d)
ORDER BY h, a
ON CONFLICT (hour_ms, artwork_id)
DO UPDATE SET views = view_buckets.views + excluded.views
