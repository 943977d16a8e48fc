//! The pure `${variable}` engine: parse, list, substitute and rename variables in a text.
//!
//! Rules: `${name}` is replaced in one pass, never recursively (a value that itself holds `${…}` is written
//! as it is); `$${` writes a literal `${`; a `$` not followed by `{` (or by `${`) is an ordinary character.
//! An unterminated `${` or a name the caller does not know is an error naming it and its position.

use std::collections::BTreeMap;
use std::fmt;

/// What can go wrong with a text's variables. Offsets count characters from 0; messages show them from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstitutionError {
    /// `${name}` where `name` is not a variable the caller knows.
    #[error("unknown variable ${{{name}}} at position {}", offset + 1)]
    UnknownVariable { name: String, offset: usize },
    /// `${` without a closing `}`.
    #[error("unterminated variable: ${{ at position {} has no closing }}", offset + 1)]
    Unterminated { offset: usize },
}

/// One piece of a parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Literal(&'a str),
    /// `$${`, written out as a literal `${`.
    Escape,
    Var {
        name: &'a str,
        offset: usize,
    },
}

/// Splits a text into literals, escapes and variables.
fn tokens(text: &str) -> Result<Vec<Token<'_>>, SubstitutionError> {
    let mut out = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let rest = &bytes[i + 1..];
            if rest.starts_with(b"${") {
                if lit_start < i {
                    out.push(Token::Literal(&text[lit_start..i]));
                }
                out.push(Token::Escape);
                i += 3;
                lit_start = i;
                continue;
            }
            if rest.starts_with(b"{") {
                if lit_start < i {
                    out.push(Token::Literal(&text[lit_start..i]));
                }
                let offset = text[..i].chars().count();
                let body = i + 2;
                let Some(len) = text[body..].find('}') else {
                    return Err(SubstitutionError::Unterminated { offset });
                };
                out.push(Token::Var {
                    name: &text[body..body + len],
                    offset,
                });
                i = body + len + 1;
                lit_start = i;
                continue;
            }
        }
        i += 1;
    }
    if lit_start < text.len() {
        out.push(Token::Literal(&text[lit_start..]));
    }
    Ok(out)
}

/// The variables a text uses, each once, in order of first use (known or not).
pub fn variables(text: &str) -> Result<Vec<String>, SubstitutionError> {
    let mut seen: Vec<String> = Vec::new();
    for t in tokens(text)? {
        if let Token::Var { name, .. } = t
            && !seen.iter().any(|s| s == name)
        {
            seen.push(name.to_owned());
        }
    }
    Ok(seen)
}

/// Checks that a text parses and uses only names `is_known` accepts; the first problem is the error.
pub fn check(text: &str, is_known: impl Fn(&str) -> bool) -> Result<(), SubstitutionError> {
    for t in tokens(text)? {
        if let Token::Var { name, offset } = t
            && !is_known(name)
        {
            return Err(SubstitutionError::UnknownVariable {
                name: name.to_owned(),
                offset,
            });
        }
    }
    Ok(())
}

/// Variable values for one user: a known name maps to its value, or to `None` when the user has none.
pub type Values = BTreeMap<String, Option<String>>;

/// A text with its variables replaced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expanded {
    pub text: String,
    /// Known variables the user has no value for (replaced by nothing), each once.
    pub missing: Vec<String>,
}

/// Replaces every `${name}` by its value in one pass. Names not in `values` are an error; names whose
/// value is `None` become empty and are listed in `missing`.
pub fn substitute(text: &str, values: &Values) -> Result<Expanded, SubstitutionError> {
    let mut out = Expanded::default();
    for t in tokens(text)? {
        match t {
            Token::Literal(s) => out.text.push_str(s),
            Token::Escape => out.text.push_str("${"),
            Token::Var { name, offset } => match values.get(name) {
                Some(Some(v)) => out.text.push_str(v),
                Some(None) => {
                    if !out.missing.iter().any(|m| m == name) {
                        out.missing.push(name.to_owned());
                    }
                }
                None => {
                    return Err(SubstitutionError::UnknownVariable {
                        name: name.to_owned(),
                        offset,
                    });
                }
            },
        }
    }
    Ok(out)
}

/// Writes a text so that [`substitute`] gives it back unchanged: every `${` becomes `$${`.
pub fn escape(text: &str) -> String {
    text.replace("${", "$${")
}

/// Rewrites `${from}` to `${to}` (escaped `$${from}` stays literal). Returns the new text and how many
/// references changed; a text that does not parse is returned unchanged.
pub fn rename(text: &str, from: &str, to: &str) -> (String, usize) {
    let Ok(toks) = tokens(text) else {
        return (text.to_owned(), 0);
    };
    let mut out = String::with_capacity(text.len());
    let mut n = 0;
    for t in toks {
        match t {
            Token::Literal(s) => out.push_str(s),
            Token::Escape => out.push_str("$${"),
            Token::Var { name, .. } => {
                let name = if name == from {
                    n += 1;
                    to
                } else {
                    name
                };
                out.push_str("${");
                out.push_str(name);
                out.push('}');
            }
        }
    }
    (out, n)
}

/// A text shown with its references, for messages (`${a}, ${b}`).
pub struct Refs<'a>(pub &'a [String]);

impl fmt::Display for Refs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "${{{name}}}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&str, Option<&str>)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn replaces_known_variables() {
        let v = vals(&[
            ("userUPN", Some("jane@contoso.com")),
            ("costCenter", Some("4711")),
        ]);
        let e = substitute("${userUPN} / ${costCenter}!", &v).unwrap();
        assert_eq!(e.text, "jane@contoso.com / 4711!");
        assert!(e.missing.is_empty());
    }

    #[test]
    fn is_single_pass_never_recursive() {
        let v = vals(&[("a", Some("${b}")), ("b", Some("B"))]);
        assert_eq!(substitute("x${a}y", &v).unwrap().text, "x${b}y");
    }

    #[test]
    fn double_dollar_escapes() {
        let v = vals(&[("a", Some("A"))]);
        assert_eq!(substitute("$${a} ${a}", &v).unwrap().text, "${a} A");
        assert_eq!(substitute("$$${a}", &v).unwrap().text, "$${a}");
        assert_eq!(
            substitute("cost $5, $$ and $", &v).unwrap().text,
            "cost $5, $$ and $"
        );
    }

    #[test]
    fn unknown_and_unterminated_name_their_position() {
        let v = vals(&[("a", Some("A"))]);
        assert_eq!(
            substitute("héllo ${nope}", &v).unwrap_err(),
            SubstitutionError::UnknownVariable {
                name: "nope".into(),
                offset: 6
            }
        );
        let e = substitute("ab ${a", &v).unwrap_err();
        assert_eq!(e, SubstitutionError::Unterminated { offset: 3 });
        assert_eq!(
            e.to_string(),
            "unterminated variable: ${ at position 4 has no closing }"
        );
        assert_eq!(
            substitute("${}", &v).unwrap_err().to_string(),
            "unknown variable ${} at position 1"
        );
    }

    #[test]
    fn missing_values_become_empty_and_are_listed_once() {
        let v = vals(&[("a", None), ("b", Some("B"))]);
        let e = substitute("${a}-${b}-${a}", &v).unwrap();
        assert_eq!(e.text, "-B-");
        assert_eq!(e.missing, vec!["a".to_owned()]);
    }

    #[test]
    fn lists_variables_in_order_once() {
        assert_eq!(
            variables("${b} $${x} ${a} ${b}").unwrap(),
            vec!["b".to_owned(), "a".to_owned()]
        );
        assert!(variables("plain").unwrap().is_empty());
        assert!(variables("${open").is_err());
        assert!(check("${a}${b}", |n| n == "a").is_err());
        assert!(check("${a}$${b}", |n| n == "a").is_ok());
    }

    #[test]
    fn rename_touches_only_real_references() {
        let (t, n) = rename("${cost} $${cost} ${costCenter} ${cost}", "cost", "cc");
        assert_eq!(t, "${cc} $${cost} ${costCenter} ${cc}");
        assert_eq!(n, 2);
        assert_eq!(rename("${open", "open", "x"), ("${open".to_owned(), 0));
    }

    #[test]
    fn refs_display() {
        assert_eq!(Refs(&["a".into(), "b".into()]).to_string(), "${a}, ${b}");
    }

    /// A small deterministic generator (xorshift) so the property test needs no extra crate.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn text(&mut self, alphabet: &[char]) -> String {
            let len = usize::try_from(self.next() % 24).unwrap();
            (0..len)
                .map(|_| alphabet[usize::try_from(self.next()).unwrap() % alphabet.len()])
                .collect()
        }
    }

    #[test]
    fn property_text_without_dollar_brace_is_unchanged_and_escaping_round_trips() {
        let alphabet = ['$', '{', '}', 'a', 'b', ' ', 'é', '\\', '$', '{'];
        let empty = Values::new();
        let some = vals(&[("a", Some("A")), ("b", None)]);
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut plain_cases = 0;
        for _ in 0..20_000 {
            let s = g.text(&alphabet);
            if !s.contains("${") {
                plain_cases += 1;
                let e = substitute(&s, &some).unwrap();
                assert_eq!(e.text, s, "plain text changed: {s:?}");
                assert!(variables(&s).unwrap().is_empty());
            }
            let escaped = escape(&s);
            assert_eq!(
                substitute(&escaped, &empty).unwrap().text,
                s,
                "escape round trip of {s:?} via {escaped:?}"
            );
            assert!(variables(&escaped).unwrap().is_empty());
            assert_eq!(rename(&escaped, "a", "z").0, escaped);
        }
        assert!(plain_cases > 1000, "the generator covers plain texts");
    }
}
