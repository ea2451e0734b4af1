INSERT INTO public.read_model_generations (schema_name, number, state, switched_at)
VALUES ($1, $2, 'live', now())
