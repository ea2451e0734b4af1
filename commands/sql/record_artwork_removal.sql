WITH a AS (
    UPDATE commands.artworks SET removed = true
    WHERE artwork_id = $2 AND exhibition_id = $1 AND NOT removed RETURNING 1)
UPDATE commands.exhibitions SET artworks = artworks - (SELECT count(*) FROM a)
WHERE exhibition_id = $1
