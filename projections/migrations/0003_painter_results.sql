-- The AI painter's results on generation jobs: the `cancelling` status, the start, the
-- progress (step of steps), the result images with their sizes and content types, the
-- failure's code. The placeholder columns of migration 2 that no event ever filled go (the
-- view over the table depends on them, hence `CASCADE`: `migrate` points the views again).
-- A read model that skipped result events before this migration catches up with a rebuild.
ALTER TABLE generation_jobs
    DROP COLUMN progress CASCADE,
    DROP COLUMN result_image_keys CASCADE,
    DROP CONSTRAINT generation_jobs_status_check,
    ADD CONSTRAINT generation_jobs_status_check CHECK (status IN
        ('requested', 'running', 'cancelling', 'completed', 'failed', 'cancelled')),
    ADD COLUMN model                          text,
    ADD COLUMN started_at_ms                  bigint,
    ADD COLUMN progress_step                  integer,
    ADD COLUMN progress_steps                 integer,
    ADD COLUMN progress_at_ms                 bigint,
    ADD COLUMN result_image_key               text,
    ADD COLUMN result_image_content_type      text,
    ADD COLUMN result_image_width             integer,
    ADD COLUMN result_image_height            integer,
    ADD COLUMN result_image_size_bytes        bigint,
    ADD COLUMN result_webp_key                text,
    ADD COLUMN result_webp_content_type       text,
    ADD COLUMN result_webp_width              integer,
    ADD COLUMN result_webp_height             integer,
    ADD COLUMN result_webp_size_bytes         bigint,
    ADD COLUMN result_thumbnail_key           text,
    ADD COLUMN result_thumbnail_content_type  text,
    ADD COLUMN result_thumbnail_width         integer,
    ADD COLUMN result_thumbnail_height        integer,
    ADD COLUMN result_thumbnail_size_bytes    bigint,
    ADD COLUMN cache_hit                      boolean,
    ADD COLUMN result_degraded                boolean,
    ADD COLUMN result_steps                   integer,
    ADD COLUMN duration_ms                    bigint,
    ADD COLUMN failure_code                   text,
    ADD CONSTRAINT generation_jobs_result_when_completed
        CHECK ((status = 'completed') = (result_image_key IS NOT NULL)),
    ADD CONSTRAINT generation_jobs_failure_when_failed
        CHECK ((status = 'failed') = (failure_code IS NOT NULL)),
    ADD CONSTRAINT generation_jobs_progress_whole
        CHECK ((progress_step IS NULL) = (progress_steps IS NULL));
