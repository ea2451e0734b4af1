INSERT INTO commands.exhibitions (exhibition_id, curator_id, status)
VALUES ($1, $2, 'draft') ON CONFLICT DO NOTHING
