//! A small, strict, namespace-aware XML reader for SAML input.
//!
//! It exists so that hostile bytes never reach libxml2 before we have looked at them: it refuses every
//! `<!…>` declaration other than comments and CDATA (so no DOCTYPE, no internal or external entities, no
//! "billion laughs"), knows only the five predefined entities and character references, limits nesting depth,
//! and checks that tags balance. It builds a tiny tree used for metadata, for the untrusted envelope peek
//! and for reading the *signature-verified* XML that xmlsec hands back.

/// Namespace of SAML 2.0 assertions.
pub(crate) const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// Namespace of SAML 2.0 protocol messages.
pub(crate) const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// Namespace of SAML 2.0 metadata.
pub(crate) const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// Namespace of XML Signature.
pub(crate) const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

const MAX_DEPTH: usize = 64;
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum XmlError {
    /// A DOCTYPE, ENTITY or other markup declaration was found.
    Doctype,
    /// The text is not well-formed (or uses a feature this reader refuses).
    Malformed(String),
}

fn malformed<T>(msg: impl Into<String>) -> Result<T, XmlError> {
    Err(XmlError::Malformed(msg.into()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    pub ns: Option<String>,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
}

impl Element {
    /// True when this element has the namespace `ns` and local name `name`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }

    /// The value of an attribute without a namespace prefix (SAML attributes are unqualified).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_none() && a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements().filter(move |e| e.is(ns, name))
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(ns, name))
    }

    /// All text directly inside this element, concatenated (comments split text nodes; joining them
    /// defeats the "comment inside NameID" truncation trick).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.children {
            if let Node::Text(t) = c {
                out.push_str(t);
            }
        }
        out
    }

    /// Visits this element and every descendant element, depth first.
    pub fn any_descendant(&self, pred: &mut dyn FnMut(&Element) -> bool) -> bool {
        if pred(self) {
            return true;
        }
        self.elements().any(|e| e.any_descendant(pred))
    }
}

/// Refuses markup declarations anywhere in the text, before any parser sees it.
pub(crate) fn refuse_declarations(text: &str) -> Result<(), XmlError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|&b| b == b'<') {
        let at = i + off;
        let rest = &bytes[at..];
        if rest.starts_with(b"<!") && !rest.starts_with(b"<!--") && !rest.starts_with(b"<![CDATA[")
        {
            return Err(XmlError::Doctype);
        }
        i = at + 1;
    }
    // An ENTITY keyword without "<!" in front is harmless text, but "<!ENTITY" in any case is caught above.
    Ok(())
}

/// Parses a whole document and returns its root element. A leading UTF-8 BOM is accepted.
pub(crate) fn parse(text: &str) -> Result<Element, XmlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    refuse_declarations(text)?;
    Parser {
        src: text,
        pos: 0,
        stack: Vec::new(),
        ns_stack: Vec::new(),
        root: None,
    }
    .run()
}

struct Open {
    qname: String,
    element: Element,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    stack: Vec<Open>,
    ns_stack: Vec<Vec<(String, String)>>,
    root: Option<Element>,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn skip_past(&mut self, end: &str, what: &str) -> Result<usize, XmlError> {
        match self.rest().find(end) {
            Some(off) => {
                let start = self.pos;
                self.pos += off + end.len();
                Ok(start + off)
            }
            None => malformed(format!("unterminated {what}")),
        }
    }

    fn run(mut self) -> Result<Element, XmlError> {
        while self.pos < self.src.len() {
            let rest = self.rest();
            if rest.starts_with("<!--") {
                self.pos += 4;
                self.skip_past("-->", "comment")?;
            } else if rest.starts_with("<![CDATA[") {
                self.pos += 9;
                let start = self.pos;
                let end = self.skip_past("]]>", "CDATA section")?;
                let text = self.src[start..end].to_owned();
                self.push_text(text)?;
            } else if rest.starts_with("<!") {
                return Err(XmlError::Doctype);
            } else if rest.starts_with("<?") {
                self.pos += 2;
                self.skip_past("?>", "processing instruction")?;
            } else if rest.starts_with("</") {
                self.end_tag()?;
            } else if rest.starts_with('<') {
                self.start_tag()?;
            } else {
                let off = rest.find('<').unwrap_or(rest.len());
                let raw = &rest[..off];
                self.pos += off;
                if raw.contains("]]>") {
                    return malformed("']]>' in text");
                }
                let text = decode_entities(raw)?;
                self.push_text(text)?;
            }
        }
        if !self.stack.is_empty() {
            return malformed("the document ends inside an element");
        }
        match self.root {
            Some(root) => Ok(root),
            None => malformed("the document has no root element"),
        }
    }

    fn push_text(&mut self, text: String) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(open) => {
                if let Some(Node::Text(prev)) = open.element.children.last_mut() {
                    prev.push_str(&text);
                } else {
                    open.element.children.push(Node::Text(text));
                }
                Ok(())
            }
            None if text.chars().all(is_xml_space) => Ok(()),
            None => malformed("text outside the root element"),
        }
    }

    fn start_tag(&mut self) -> Result<(), XmlError> {
        if self.root.is_some() && self.stack.is_empty() {
            return malformed("more than one root element");
        }
        if self.stack.len() >= MAX_DEPTH {
            return malformed("elements are nested too deeply");
        }
        self.pos += 1;
        let qname = self.name()?;
        let mut raw_attrs: Vec<(String, String)> = Vec::new();
        let self_closing;
        loop {
            let ws = self.skip_ws();
            let rest = self.rest();
            if rest.starts_with("/>") {
                self.pos += 2;
                self_closing = true;
                break;
            }
            if rest.starts_with('>') {
                self.pos += 1;
                self_closing = false;
                break;
            }
            if rest.is_empty() {
                return malformed("unterminated start tag");
            }
            if !ws {
                return malformed("attributes must be separated by white space");
            }
            let name = self.name()?;
            self.skip_ws();
            if !self.rest().starts_with('=') {
                return malformed("attribute without '='");
            }
            self.pos += 1;
            self.skip_ws();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return malformed("attribute value without quotes"),
            };
            self.pos += 1;
            let Some(off) = self.rest().find(quote) else {
                return malformed("unterminated attribute value");
            };
            let raw = &self.rest()[..off];
            if raw.contains('<') {
                return malformed("'<' in an attribute value");
            }
            let value = decode_entities(raw)?
                .chars()
                .map(|c| {
                    if matches!(c, '\t' | '\n' | '\r') {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            self.pos += off + 1;
            if raw_attrs.iter().any(|(n, _)| *n == name) {
                return malformed(format!("duplicate attribute {name}"));
            }
            raw_attrs.push((name, value));
        }

        let mut decls = Vec::new();
        for (name, value) in &raw_attrs {
            if name == "xmlns" {
                decls.push((String::new(), value.clone()));
            } else if let Some(prefix) = name.strip_prefix("xmlns:") {
                if value.is_empty() {
                    return malformed("empty namespace for a prefix");
                }
                decls.push((prefix.to_owned(), value.clone()));
            }
        }
        self.ns_stack.push(decls);

        let (prefix, local) = split_qname(&qname)?;
        let ns = self.resolve(prefix, true)?;
        let mut attrs = Vec::new();
        for (name, value) in raw_attrs {
            if name == "xmlns" || name.starts_with("xmlns:") {
                continue;
            }
            let (p, l) = split_qname(&name)?;
            let ans = if p.is_empty() {
                None
            } else {
                self.resolve(p, false)?
            };
            if attrs.iter().any(|a: &Attr| a.ns == ans && a.name == l) {
                return malformed(format!("duplicate attribute {name}"));
            }
            attrs.push(Attr {
                ns: ans,
                name: l.to_owned(),
                value,
            });
        }
        let element = Element {
            ns,
            name: local.to_owned(),
            attrs,
            children: Vec::new(),
        };
        if self_closing {
            self.ns_stack.pop();
            self.close(element);
        } else {
            self.stack.push(Open { qname, element });
        }
        Ok(())
    }

    fn end_tag(&mut self) -> Result<(), XmlError> {
        self.pos += 2;
        let qname = self.name()?;
        self.skip_ws();
        if !self.rest().starts_with('>') {
            return malformed("malformed end tag");
        }
        self.pos += 1;
        let Some(open) = self.stack.pop() else {
            return malformed(format!("unexpected end tag {qname}"));
        };
        if open.qname != qname {
            return malformed(format!(
                "end tag {qname} does not match start tag {}",
                open.qname
            ));
        }
        self.ns_stack.pop();
        self.close(open.element);
        Ok(())
    }

    fn close(&mut self, element: Element) {
        match self.stack.last_mut() {
            Some(parent) => parent.element.children.push(Node::Element(element)),
            None => self.root = Some(element),
        }
    }

    fn resolve(&self, prefix: &str, element: bool) -> Result<Option<String>, XmlError> {
        if prefix == "xml" {
            return Ok(Some(XML_NS.to_owned()));
        }
        if prefix.is_empty() && !element {
            return Ok(None);
        }
        for frame in self.ns_stack.iter().rev() {
            if let Some((_, uri)) = frame.iter().rev().find(|(p, _)| p == prefix) {
                return Ok(if uri.is_empty() {
                    None
                } else {
                    Some(uri.clone())
                });
            }
        }
        if prefix.is_empty() {
            Ok(None)
        } else {
            malformed(format!("undeclared namespace prefix {prefix}"))
        }
    }

    fn skip_ws(&mut self) -> bool {
        let rest = self.rest();
        let n = rest.len() - rest.trim_start_matches(is_xml_space).len();
        self.pos += n;
        n > 0
    }

    fn name(&mut self) -> Result<String, XmlError> {
        let rest = self.rest();
        let n = rest
            .find(|c: char| is_xml_space(c) || matches!(c, '/' | '>' | '=' | '<' | '"' | '\''))
            .unwrap_or(rest.len());
        if n == 0 {
            return malformed("missing name");
        }
        let name = rest[..n].to_owned();
        self.pos += n;
        Ok(name)
    }
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn split_qname(qname: &str) -> Result<(&str, &str), XmlError> {
    match qname.split_once(':') {
        None => Ok(("", qname)),
        Some((p, l)) if !p.is_empty() && !l.is_empty() && !l.contains(':') => Ok((p, l)),
        Some(_) => malformed(format!("bad qualified name {qname}")),
    }
}

fn decode_entities(raw: &str) -> Result<String, XmlError> {
    if !raw.contains('&') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            return malformed("'&' without ';'");
        };
        let entity = &after[..semi];
        let ch = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    return malformed(format!("undefined entity &{entity};"));
                };
                match code.and_then(char::from_u32) {
                    Some(c) if c != '\0' => c,
                    _ => return malformed("bad character reference"),
                }
            }
        };
        out.push(ch);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escapes text for use inside an attribute value or element content.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_attributes_and_text() {
        let doc = parse(
            "\u{feff}<?xml version=\"1.0\"?><a:r xmlns:a=\"urn:a\" xmlns=\"urn:d\" x='1 &amp; 2'>\
             <c>t<!-- c -->u&#x41;<![CDATA[<v>]]></c><a:e/></a:r>",
        )
        .unwrap();
        assert!(doc.is("urn:a", "r"));
        assert_eq!(doc.attr("x"), Some("1 & 2"));
        let c = doc.child("urn:d", "c").unwrap();
        assert_eq!(c.text(), "tuA<v>");
        assert!(doc.child("urn:a", "e").is_some());
    }

    #[test]
    fn refuses_doctype_entities_and_bad_markup() {
        assert_eq!(
            parse("<!DOCTYPE r [<!ENTITY x \"y\">]><r>&x;</r>"),
            Err(XmlError::Doctype)
        );
        assert_eq!(parse("<r><!ENTITY x></r>"), Err(XmlError::Doctype));
        assert!(matches!(parse("<r>&x;</r>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse("<r><a></r>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse("<r/><s/>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse("<p:r/>"), Err(XmlError::Malformed(_))));
        assert!(matches!(
            parse("<r a='1' a='2'/>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(parse(""), Err(XmlError::Malformed(_))));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(matches!(parse(&deep), Err(XmlError::Malformed(_))));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b&\"c'"), "a&lt;b&amp;&quot;c&apos;");
    }
}
