SELECT v.event_id FROM unnest($1::uuid[]) AS k(id)
CROSS JOIN LATERAL (
    SELECT event_id FROM artwork_views WHERE event_id = k.id LIMIT 1
) v
