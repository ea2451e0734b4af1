UPDATE public.read_model_generations
SET state = CASE WHEN schema_name = $2 THEN 'live' ELSE 'retired' END,
    switched_at = CASE WHEN schema_name = $2 THEN now() ELSE switched_at END
WHERE schema_name IN ($1, $2)
