UPDATE commands.exhibitions SET status = 'published'
WHERE exhibition_id = $1 AND status = 'draft'
