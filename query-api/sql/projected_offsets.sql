SELECT o.topic, o.partition, o.next_offset FROM projection_offsets o
JOIN unnest($1::text[], $2::integer[]) AS x(t, p)
  ON o.topic = x.t AND o.partition = x.p
WHERE o.projection = $3
