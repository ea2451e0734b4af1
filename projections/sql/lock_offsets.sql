SELECT o.topic, o.partition, o.next_offset FROM projection_offsets o
JOIN unnest($2::text[], $3::integer[]) AS x(t, p)
  ON o.topic = x.t AND o.partition = x.p
WHERE o.projection = $1
ORDER BY o.topic, o.partition FOR UPDATE OF o
