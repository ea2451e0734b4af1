SELECT schema_name FROM public.read_model_generations
WHERE to_regclass(schema_name || '.projection_offsets') IS NOT NULL
