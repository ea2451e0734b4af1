SELECT topic, partition, next_offset FROM projection_offsets
WHERE projection = $1
