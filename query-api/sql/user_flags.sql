SELECT k.u AS user_id, k.a AS artwork_id,
       COALESCE(l.liked, false) AS liked,
       COALESCE(f.favorited, false) AS favorited
FROM unnest($1::text[], $2::text[]) AS k(u, a)
LEFT JOIN artwork_likes l ON l.user_id = k.u AND l.artwork_id = k.a
LEFT JOIN artwork_favorites f ON f.user_id = k.u AND f.artwork_id = k.a
