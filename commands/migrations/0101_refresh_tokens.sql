-- Refresh tokens, stored as SHA-256 digests. A family is one login's chain of rotations.
CREATE TABLE commands.refresh_tokens (
    token_hash bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    text        NOT NULL REFERENCES commands.users (user_id),
    family_id  uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    used       boolean     NOT NULL DEFAULT false,
    used_at    timestamptz,
    revoked    boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON commands.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON commands.refresh_tokens (expires_at);
