INSERT INTO artwork_stats (artwork_id)
SELECT unnest($1::text[]) ORDER BY 1
ON CONFLICT (artwork_id) DO NOTHING
