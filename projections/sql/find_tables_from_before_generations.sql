SELECT tablename::text AS tablename FROM pg_tables
WHERE schemaname = 'public' AND tablename = ANY($1)
