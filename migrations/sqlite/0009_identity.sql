-- Admin > Identity: one row per kind of identity provider ('entra' = Entra ID over OpenID Connect, 'adfs', 'saml').
-- At most one is enabled: the service refuses a second, and the partial unique index makes a race lose too.
CREATE TABLE identity_providers (
    kind                 TEXT PRIMARY KEY,
    enabled              BIGINT NOT NULL,
    use_for_admin        BIGINT NOT NULL,
    use_for_registration BIGINT NOT NULL,
    settings             TEXT NOT NULL,
    client_secret_sealed TEXT,
    discovered           TEXT,
    metadata_url         TEXT,
    metadata_fetched_at  BIGINT,
    metadata_error       TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE UNIQUE INDEX identity_providers_one_enabled ON identity_providers (enabled) WHERE enabled = 1;

-- Trusted SAML signing certificates; several at once for rollover.
CREATE TABLE idp_certificates (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    der_b64     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    not_after   BIGINT NOT NULL,
    source      TEXT NOT NULL,
    added_at    BIGINT NOT NULL,
    UNIQUE (kind, fingerprint)
);

-- Sign-ins in flight, keyed by the SAML request id or the OIDC state. Kept on the server because the
-- IdP's cross-site POST carries no SameSite=Lax cookie; `binding_hash` ties the request to the browser
-- that started it (checked on the same-site GET that completes the sign-in).
CREATE TABLE sso_requests (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    binding_hash    TEXT NOT NULL,
    nonce           TEXT,
    pkce_verifier   TEXT,
    relay           TEXT,
    admin_id        TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    answered_at     BIGINT,
    outcome         TEXT,
    refusal         TEXT,
    claims          TEXT,
    matched_user_id TEXT,
    completed_at    BIGINT
);
CREATE INDEX sso_requests_expires ON sso_requests (expires_at);

-- SAML assertion ids already accepted, kept until the assertion expires (replay cache).
CREATE TABLE saml_seen_assertions (
    assertion_id TEXT PRIMARY KEY,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX saml_seen_assertions_expires ON saml_seen_assertions (expires_at);
