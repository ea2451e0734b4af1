SELECT count(*) AS missing FROM pg_tables t
WHERE t.schemaname = $1 AND t.tablename <> 'schema_migrations'
  AND NOT EXISTS (SELECT 1 FROM pg_views v
                  WHERE v.schemaname = 'public' AND v.viewname = t.tablename)
