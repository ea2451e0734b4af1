INSERT INTO set_event_positions
    (artwork_id, mark, event_id, topic, partition, message_offset)
SELECT a, $1, e, t, p, o
FROM unnest($2::text[], $3::uuid[], $4::text[], $5::integer[], $6::bigint[])
     AS x(a, e, t, p, o)
ON CONFLICT (artwork_id, mark, event_id) DO NOTHING
