INSERT INTO projection_offsets (projection, topic, partition, next_offset)
SELECT $1, t, p, o FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS x(t, p, o)
ON CONFLICT (projection, topic, partition)
DO UPDATE SET next_offset = GREATEST(projection_offsets.next_offset, excluded.next_offset)
