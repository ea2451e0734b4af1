-- Accounts (versions 100 and up). The user id is the username; usernames are unique
-- ignoring case, so "Ada" cannot pass for "ada".
CREATE TABLE commands.users (
    user_id       text        PRIMARY KEY,
    display_name  text        NOT NULL,
    password_hash text        NOT NULL,
    role          text        NOT NULL DEFAULT 'visitor'
                              CHECK (role IN ('visitor', 'curator', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_user_id_ci ON commands.users (lower(user_id));
