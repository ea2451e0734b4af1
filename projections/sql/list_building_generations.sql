SELECT schema_name, number FROM public.read_model_generations
WHERE state = 'building' ORDER BY number
