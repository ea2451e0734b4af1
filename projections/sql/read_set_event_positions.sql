SELECT p.artwork_id, p.event_id, p.topic, p.partition, p.message_offset
FROM unnest($1::text[], $2::uuid[]) AS k(a, e)
CROSS JOIN LATERAL (
    SELECT artwork_id, event_id, topic, partition, message_offset
    FROM set_event_positions
    WHERE artwork_id = k.a AND mark = $3 AND event_id = k.e
    LIMIT 1
) p
