CREATE TABLE commands.exhibitions (
    exhibition_id uuid PRIMARY KEY,
    curator_id    text NOT NULL,
    status        text NOT NULL CHECK (status IN ('draft', 'published', 'closed')),
    artworks      bigint NOT NULL DEFAULT 0 CHECK (artworks >= 0)
);
CREATE TABLE commands.artworks (
    artwork_id    text PRIMARY KEY,
    exhibition_id uuid NOT NULL,
    removed       boolean NOT NULL DEFAULT false
);
CREATE TABLE commands.comments (
    comment_id uuid PRIMARY KEY,
    artwork_id text NOT NULL,
    author_id  text NOT NULL,
    deleted    boolean NOT NULL DEFAULT false
);
CREATE TABLE commands.generations (
    request_id uuid PRIMARY KEY,
    user_id    text NOT NULL,
    cancelled  boolean NOT NULL DEFAULT false
);
