//! Owns outgoing mail: SMTP settings, the outbox and its worker. See docs/mail.md.
