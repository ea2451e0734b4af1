SELECT exhibition_id FROM commands.artworks
WHERE artwork_id = $1 AND NOT removed FOR UPDATE
