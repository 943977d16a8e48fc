//! IdP metadata and certificate parsing on hostile input: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster::identity::saml::{parse_certificate, parse_idp_metadata};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_idp_metadata(text);
        let _ = parse_certificate(text);
    }
});
