UPDATE artwork_stats s
SET like_count = s.like_count + d.likes,
    favorite_count = s.favorite_count + d.favorites,
    comment_count = s.comment_count + d.comments,
    view_count = s.view_count + d.views
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
     AS d(artwork_id, likes, favorites, comments, views)
WHERE s.artwork_id = d.artwork_id
