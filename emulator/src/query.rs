//! OData query options: parsing the query string and a small `$filter` language
//! (`eq`/`ne`/`gt`/`ge`/`lt`/`le`, `in`, `startsWith`, `endsWith`, `not`, `and`/`or`,
//! `prop/any(c:c eq '…')` and `parent/child` paths).

use serde_json::Value;

/// The system query options of one request (names without `$`, lower-cased).
#[derive(Debug, Default, Clone)]
pub(crate) struct Query {
    pub(crate) select: Option<String>,
    pub(crate) top: Option<String>,
    pub(crate) filter: Option<String>,
    pub(crate) count: Option<String>,
    pub(crate) skiptoken: Option<String>,
    pub(crate) deltatoken: Option<String>,
    pub(crate) orderby: Option<String>,
    pub(crate) search: Option<String>,
    pub(crate) expand: Option<String>,
    pub(crate) skip: Option<String>,
}

impl Query {
    pub(crate) fn parse(qs: &str) -> Result<Self, String> {
        let mut q = Query::default();
        for (k, v) in url::form_urlencoded::parse(qs.as_bytes()) {
            let key = k.to_ascii_lowercase();
            let (dollar, name) = match key.strip_prefix('$') {
                Some(n) => (true, n.to_string()),
                None => (false, key.clone()),
            };
            let slot = match name.as_str() {
                "select" => &mut q.select,
                "top" => &mut q.top,
                "filter" => &mut q.filter,
                "count" => &mut q.count,
                "skiptoken" => &mut q.skiptoken,
                "deltatoken" => &mut q.deltatoken,
                "orderby" => &mut q.orderby,
                "search" => &mut q.search,
                "expand" => &mut q.expand,
                "skip" => &mut q.skip,
                "format" => continue,
                _ if dollar => return Err(format!("Query option '{k}' is not allowed.")),
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!(
                    "Query option '${name}' was specified more than once, but it must be specified at most once."
                ));
            }
            *slot = Some(v.into_owned());
        }
        Ok(q)
    }

    pub(crate) fn count_true(&self) -> bool {
        self.count
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("true"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Null,
    Bool(bool),
    Num(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    Or(Vec<Filter>),
    And(Vec<Filter>),
    Not(Box<Filter>),
    Cmp { prop: String, op: Op, lit: Lit },
    StartsWith { prop: String, value: String },
    EndsWith { prop: String, value: String },
    In { prop: String, values: Vec<Lit> },
    Any { prop: String, op: Op, lit: Lit },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Comma,
    Colon,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1;
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | ',' | ':' | '\'')
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(format!("expected {t:?}, found {other:?}")),
        }
    }

    fn word(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut items = vec![self.and()?];
        while self.peek_word("or") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::Or(items)
        })
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut items = vec![self.unary()?];
        while self.peek_word("and") {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::And(items)
        })
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn literal(&mut self) -> Result<Lit, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "null" => Ok(Lit::Null),
                "true" => Ok(Lit::Bool(true)),
                "false" => Ok(Lit::Bool(false)),
                _ => w
                    .parse::<f64>()
                    .map(Lit::Num)
                    .map_err(|_| format!("'{w}' is not a literal")),
            },
            other => Err(format!("expected a literal, found {other:?}")),
        }
    }

    fn op(&mut self) -> Result<Op, String> {
        let w = self.word()?;
        Ok(match w.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return Err(format!("unsupported operator '{w}'")),
        })
    }

    fn primary(&mut self) -> Result<Filter, String> {
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let f = self.or()?;
            self.expect(Tok::Close)?;
            return Ok(f);
        }
        let w = self.word()?;
        let lw = w.to_ascii_lowercase();
        if (lw == "startswith" || lw == "endswith") && self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let prop = self.word()?;
            self.expect(Tok::Comma)?;
            let value = match self.literal()? {
                Lit::Str(s) => s,
                other => return Err(format!("{w} needs a string, found {other:?}")),
            };
            self.expect(Tok::Close)?;
            return Ok(if lw == "startswith" {
                Filter::StartsWith { prop, value }
            } else {
                Filter::EndsWith { prop, value }
            });
        }
        if lw.ends_with("/any") && self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let var = self.word()?;
            self.expect(Tok::Colon)?;
            let var2 = self.word()?;
            if var != var2 {
                return Err(format!("unknown lambda variable '{var2}'"));
            }
            let op = self.op()?;
            let lit = self.literal()?;
            self.expect(Tok::Close)?;
            return Ok(Filter::Any {
                prop: w[..w.len() - 4].to_string(),
                op,
                lit,
            });
        }
        if self.peek_word("in") {
            self.pos += 1;
            self.expect(Tok::Open)?;
            let mut values = vec![self.literal()?];
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                values.push(self.literal()?);
            }
            self.expect(Tok::Close)?;
            return Ok(Filter::In { prop: w, values });
        }
        let op = self.op()?;
        let lit = self.literal()?;
        Ok(Filter::Cmp { prop: w, op, lit })
    }
}

impl Filter {
    pub(crate) fn parse(s: &str) -> Result<Filter, String> {
        let toks = tokenize(s)?;
        let mut p = Parser { toks, pos: 0 };
        let f = p.or()?;
        if p.pos != p.toks.len() {
            return Err(format!("unexpected {:?}", p.peek()));
        }
        Ok(f)
    }

    /// `ne`, `not` and `endsWith` are advanced queries (ConsistencyLevel + $count).
    pub(crate) fn needs_advanced(&self) -> bool {
        match self {
            Filter::Or(v) | Filter::And(v) => v.iter().any(Filter::needs_advanced),
            Filter::Not(_) | Filter::EndsWith { .. } => true,
            Filter::Cmp { op, .. } | Filter::Any { op, .. } => *op == Op::Ne,
            Filter::StartsWith { .. } | Filter::In { .. } => false,
        }
    }

    /// Rewrite property paths with `canon` (which returns `None` for unknown properties).
    pub(crate) fn canonicalize(
        &mut self,
        canon: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        let fix = |p: &mut String| -> Result<(), String> {
            match canon(p) {
                Some(c) => {
                    *p = c;
                    Ok(())
                }
                None => Err(p.clone()),
            }
        };
        match self {
            Filter::Or(v) | Filter::And(v) => v.iter_mut().try_for_each(|f| f.canonicalize(canon)),
            Filter::Not(f) => f.canonicalize(canon),
            Filter::Cmp { prop, .. }
            | Filter::StartsWith { prop, .. }
            | Filter::EndsWith { prop, .. }
            | Filter::In { prop, .. }
            | Filter::Any { prop, .. } => fix(prop),
        }
    }

    /// For delta: `id eq '…' (or id eq '…')*` → the ids.
    pub(crate) fn id_list(&self) -> Option<Vec<String>> {
        match self {
            Filter::Cmp {
                prop,
                op: Op::Eq,
                lit: Lit::Str(v),
            } if prop == "id" => Some(vec![v.clone()]),
            Filter::Or(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.extend(i.id_list()?);
                }
                Some(out)
            }
            _ => None,
        }
    }

    pub(crate) fn eval(&self, get: &dyn Fn(&str) -> Option<Value>) -> bool {
        match self {
            Filter::Or(v) => v.iter().any(|f| f.eval(get)),
            Filter::And(v) => v.iter().all(|f| f.eval(get)),
            Filter::Not(f) => !f.eval(get),
            Filter::Cmp { prop, op, lit } => cmp(&lookup(get, prop), *op, lit),
            Filter::StartsWith { prop, value } => text_match(&lookup(get, prop), |s| {
                s.to_lowercase().starts_with(&value.to_lowercase())
            }),
            Filter::EndsWith { prop, value } => text_match(&lookup(get, prop), |s| {
                s.to_lowercase().ends_with(&value.to_lowercase())
            }),
            Filter::In { prop, values } => {
                let v = lookup(get, prop);
                values.iter().any(|l| cmp(&v, Op::Eq, l))
            }
            Filter::Any { prop, op, lit } => match lookup(get, prop) {
                Value::Array(items) => items.iter().any(|i| cmp(i, *op, lit)),
                _ => false,
            },
        }
    }
}

fn lookup(get: &dyn Fn(&str) -> Option<Value>, path: &str) -> Value {
    let mut parts = path.split('/');
    let first = parts.next().unwrap_or_default();
    let mut v = get(first).unwrap_or(Value::Null);
    for p in parts {
        v = v.get(p).cloned().unwrap_or(Value::Null);
    }
    v
}

fn text_match(v: &Value, f: impl Fn(&str) -> bool) -> bool {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().any(|i| i.as_str().is_some_and(&f)),
        _ => false,
    }
}

fn cmp(v: &Value, op: Op, lit: &Lit) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (v, lit) {
        (Value::Null, Lit::Null) => Some(Ordering::Equal),
        (_, Lit::Null) | (Value::Null, _) => None,
        (Value::String(a), Lit::Str(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
        (Value::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Lit::Num(b)) => a.as_f64().and_then(|a| a.partial_cmp(b)),
        (Value::Array(items), _) if op == Op::Eq => {
            return items.iter().any(|i| cmp(i, Op::Eq, lit));
        }
        _ => None,
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        Op::Lt => ord == Some(Ordering::Less),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(p: &str) -> Option<Value> {
        match p {
            "mail" => Some(json!("Adele.V@contoso.example")),
            "department" => Some(Value::Null),
            "groupTypes" => Some(json!(["Unified"])),
            "onPremisesExtensionAttributes" => Some(json!({"extensionAttribute7": "Employee"})),
            _ => None,
        }
    }

    #[test]
    fn filters() {
        let ok = |s: &str| Filter::parse(s).unwrap().eval(&get);
        assert!(ok("mail eq 'adele.v@contoso.example'"));
        assert!(ok("startsWith(mail,'adele')"));
        assert!(ok("department eq null"));
        assert!(!ok("department ne null"));
        assert!(ok("groupTypes/any(c:c eq 'Unified')"));
        assert!(ok(
            "onPremisesExtensionAttributes/extensionAttribute7 eq 'Employee'"
        ));
        assert!(ok(
            "mail in ('x', 'adele.v@contoso.example') and not(department ne null)"
        ));
        assert!(ok("(mail eq 'x' or endsWith(mail,'.example'))"));
        assert!(Filter::parse("mail eq").is_err());
        assert!(Filter::parse("mail eq 'x' extra").is_err());
        let ids = Filter::parse("id eq 'a' or id eq 'b'").unwrap().id_list();
        assert_eq!(ids, Some(vec!["a".to_string(), "b".to_string()]));
        assert!(
            Filter::parse("not startsWith(mail,'a')")
                .unwrap()
                .needs_advanced()
        );
    }
}
