//! The `${variable}` parser and substitution engine: never panics, and text without `${` comes back unchanged.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use roster::configurations::substitute;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut values = BTreeMap::new();
    values.insert("userUPN".to_owned(), Some("jane@contoso.example".to_owned()));
    values.insert("missing".to_owned(), None);
    let _ = substitute::variables(text);
    let _ = substitute::check(text, |n| n == "userUPN");
    if let Ok(out) = substitute::substitute(text, &values)
        && !text.contains("${")
    {
        assert_eq!(out.text, text);
    }
    let escaped = substitute::escape(text);
    if let Ok(out) = substitute::substitute(&escaped, &BTreeMap::new()) {
        assert_eq!(out.text, text, "escape then substitute gives the text back");
    }
});
