SELECT schema_name FROM public.read_model_generations
WHERE state IN ('retired', 'failed') AND ($1::text IS NULL OR schema_name = $1)
ORDER BY number
