-- Configurations with ${variable} substitution (issue 8).
-- The typed fields of each kind are JSON TEXT (validated through configurations::model::Payload); kind and the
-- name are columns so lists and uniqueness need no JSON functions. A Wi-Fi Personal password is sealed with the
-- master key in secret_sealed and never stored in fields.
CREATE TABLE configurations (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    name_lower    TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    fields        TEXT NOT NULL,
    secret_sealed TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
