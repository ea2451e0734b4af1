INSERT INTO artwork_views (event_id, artwork_id, user_id, viewed_at_ms)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[])
