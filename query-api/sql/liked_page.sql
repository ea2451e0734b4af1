SELECT artwork_id, occurred_at_ms FROM artwork_likes
WHERE user_id = $1 AND liked
  AND ($2::bigint IS NULL OR (occurred_at_ms, artwork_id) < ($2, $3::text))
ORDER BY occurred_at_ms DESC, artwork_id DESC LIMIT $4
