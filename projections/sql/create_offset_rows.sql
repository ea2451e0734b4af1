INSERT INTO projection_offsets (projection, topic, partition, next_offset)
SELECT $1, t, p, 0 FROM unnest($2::text[], $3::integer[]) AS x(t, p)
ON CONFLICT DO NOTHING
