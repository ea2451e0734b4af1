SELECT artwork_id, like_count, favorite_count, comment_count, view_count
FROM artwork_stats WHERE artwork_id = ANY($1)
