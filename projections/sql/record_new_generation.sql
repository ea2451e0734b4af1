INSERT INTO public.read_model_generations (schema_name, number, state)
VALUES ($1, $2, 'building')
