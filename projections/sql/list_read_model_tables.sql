SELECT DISTINCT t.tablename::text AS tablename, t.schemaname = $1 AS ours
FROM pg_tables t
JOIN public.read_model_generations g ON g.schema_name = t.schemaname
WHERE t.tablename <> 'schema_migrations'
ORDER BY 1, 2
