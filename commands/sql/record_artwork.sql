WITH a AS (
    INSERT INTO commands.artworks (artwork_id, exhibition_id) VALUES ($2, $1)
    ON CONFLICT (artwork_id) DO UPDATE SET removed = false
    WHERE commands.artworks.removed RETURNING 1)
UPDATE commands.exhibitions SET artworks = artworks + (SELECT count(*) FROM a)
WHERE exhibition_id = $1
