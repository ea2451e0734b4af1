-- The read model of every event. The projection of the first migration folded likes only,
-- under another name; its rows are dropped, so the new projection rebuilds them from the log
-- together with everything else.
DELETE FROM projection_offsets WHERE projection = 'likes';
TRUNCATE artwork_likes, artwork_stats;
DROP INDEX artwork_likes_by_user;
CREATE INDEX artwork_likes_by_user ON artwork_likes (user_id, occurred_at_ms DESC, artwork_id DESC)
    WHERE liked;
ALTER TABLE artwork_stats
    ADD COLUMN favorite_count bigint NOT NULL DEFAULT 0 CHECK (favorite_count >= 0),
    ADD COLUMN comment_count  bigint NOT NULL DEFAULT 0 CHECK (comment_count >= 0),
    ADD COLUMN view_count     bigint NOT NULL DEFAULT 0 CHECK (view_count >= 0);
CREATE TABLE artwork_favorites (
    artwork_id     text    NOT NULL,
    user_id        text    NOT NULL,
    favorited      boolean NOT NULL,
    event_id       uuid    NOT NULL,
    occurred_at_ms bigint  NOT NULL,
    PRIMARY KEY (artwork_id, user_id)
);
CREATE INDEX artwork_favorites_by_user
    ON artwork_favorites (user_id, occurred_at_ms DESC, artwork_id DESC) WHERE favorited;
CREATE TABLE like_buckets (
    hour_ms    bigint NOT NULL,
    artwork_id text   NOT NULL,
    net_likes  bigint NOT NULL,
    PRIMARY KEY (hour_ms, artwork_id)
);
CREATE TABLE artwork_views (
    event_id     uuid   PRIMARY KEY,
    artwork_id   text   NOT NULL,
    user_id      text,
    viewed_at_ms bigint NOT NULL
);
CREATE TABLE view_buckets (
    hour_ms    bigint NOT NULL,
    artwork_id text   NOT NULL,
    views      bigint NOT NULL CHECK (views >= 0),
    PRIMARY KEY (hour_ms, artwork_id)
);
CREATE TABLE comments (
    comment_id    uuid    PRIMARY KEY,
    artwork_id    text    NOT NULL,
    user_id       text    NOT NULL,
    body          text    NOT NULL,
    posted_at_ms  bigint  NOT NULL,
    deleted       boolean NOT NULL DEFAULT false,
    deleted_by    text,
    deleted_at_ms bigint
);
CREATE INDEX comments_by_artwork ON comments (artwork_id, posted_at_ms DESC, comment_id DESC)
    WHERE NOT deleted;
CREATE TABLE users (
    user_id          text   PRIMARY KEY,
    display_name     text   NOT NULL,
    role             text   NOT NULL CHECK (role IN ('visitor', 'curator', 'admin')),
    registered_at_ms bigint NOT NULL
);
CREATE TABLE exhibitions (
    exhibition_id   uuid   PRIMARY KEY,
    curator_id      text   NOT NULL,
    title           text   NOT NULL,
    description     text   NOT NULL,
    opens_at_ms     bigint NOT NULL,
    closes_at_ms    bigint NOT NULL,
    status          text   NOT NULL CHECK (status IN ('draft', 'published', 'closed')),
    created_at_ms   bigint NOT NULL,
    published_at_ms bigint,
    closed_at_ms    bigint
);
CREATE INDEX exhibitions_by_schedule ON exhibitions (opens_at_ms, exhibition_id);
CREATE INDEX exhibitions_by_status ON exhibitions (status, opens_at_ms, exhibition_id);
CREATE TABLE artworks (
    artwork_id         text    PRIMARY KEY,
    exhibition_id      uuid    NOT NULL,
    title              text    NOT NULL,
    artist             text    NOT NULL,
    year               integer,
    style              text,
    description        text    NOT NULL,
    image_key          text    NOT NULL,
    image_content_type text    NOT NULL,
    image_width        integer NOT NULL,
    image_height       integer NOT NULL,
    added_by           text    NOT NULL,
    added_at_ms        bigint  NOT NULL,
    removed            boolean NOT NULL DEFAULT false,
    removed_at_ms      bigint
);
CREATE INDEX artworks_by_added ON artworks (added_at_ms DESC, artwork_id DESC) WHERE NOT removed;
CREATE INDEX artworks_by_exhibition ON artworks (exhibition_id, added_at_ms DESC, artwork_id DESC)
    WHERE NOT removed;
CREATE TABLE generation_jobs (
    request_id        uuid    PRIMARY KEY,
    user_id           text    NOT NULL,
    mode              text    NOT NULL CHECK (mode IN ('text_to_image', 'image_to_image')),
    prompt            text,
    negative_prompt   text,
    style             text    NOT NULL,
    seed              bigint  NOT NULL,
    steps             integer NOT NULL,
    width             integer NOT NULL,
    height            integer NOT NULL,
    source_image_key  text,
    degraded          boolean NOT NULL,
    status            text    NOT NULL
        CHECK (status IN ('requested', 'running', 'completed', 'failed', 'cancelled')),
    requested_at_ms   bigint  NOT NULL,
    cancelled_at_ms   bigint,
    -- Filled by the AI painter's result events.
    progress          real    CHECK (progress BETWEEN 0 AND 1),
    result_image_keys text[]  NOT NULL DEFAULT '{}',
    failure_reason    text,
    finished_at_ms    bigint
);
CREATE INDEX generation_jobs_by_user ON generation_jobs (user_id, requested_at_ms DESC, request_id DESC);
