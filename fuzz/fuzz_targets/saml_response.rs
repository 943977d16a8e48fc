//! SAML response handling on hostile input: the untrusted peek and the full verification never panic, and
//! nothing unsigned is ever accepted (there is no trusted certificate here, so every input must be refused).
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use roster::identity::saml::{Expectations, SpConfig, peek_in_response_to, verify_response};

fuzz_target!(|data: &[u8]| {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let _ = peek_in_response_to(&b64);
    let sp = SpConfig {
        entity_id: "https://roster.example/saml/metadata".into(),
        acs_url: "https://roster.example/saml/acs".into(),
    };
    let exp = Expectations {
        sp: &sp,
        idp_entity_id: "https://idp.example/",
        trusted_certs: &[],
        expected_request_id: "_req",
        now: 1_800_000_000_000,
        clock_skew_ms: 180_000,
    };
    assert!(verify_response(&b64, &exp).is_err(), "accepted without a trusted certificate");
});
