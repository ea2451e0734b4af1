UPDATE public.read_model_generations SET state = 'failed'
WHERE schema_name = $1 AND state = 'building'
