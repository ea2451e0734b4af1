SELECT curator_id, status, artworks FROM commands.exhibitions
WHERE exhibition_id = $1 FOR UPDATE
