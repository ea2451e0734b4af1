-- The first read model: likes only (dropped by version 2).
CREATE TABLE projection_offsets (
    projection  text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (projection, topic, partition)
);
CREATE TABLE artwork_likes (
    artwork_id     text    NOT NULL,
    user_id        text    NOT NULL,
    liked          boolean NOT NULL,
    event_id       uuid    NOT NULL,
    occurred_at_ms bigint  NOT NULL,
    PRIMARY KEY (artwork_id, user_id)
);
CREATE INDEX artwork_likes_by_user ON artwork_likes (user_id, occurred_at_ms DESC)
    WHERE liked;
CREATE TABLE artwork_stats (
    artwork_id text   PRIMARY KEY,
    like_count bigint NOT NULL DEFAULT 0 CHECK (like_count >= 0)
);
