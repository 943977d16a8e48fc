//! A strict, namespace-aware XML reader for SAML input, built on `roxmltree`.
//!
//! It exists so that hostile bytes never reach libxml2 before we have looked at them. Parsing is done by
//! `roxmltree` with DTDs disabled; on top of that we refuse every `<!…>` declaration other than comments and
//! CDATA anywhere in the text (so no DOCTYPE, no internal or external entities, no "billion laughs") and limit
//! nesting depth. The result is converted into a tiny owned tree used for metadata, for the untrusted envelope
//! peek and for reading the *signature-verified* XML that xmlsec hands back.

/// Namespace of SAML 2.0 assertions.
pub(crate) const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// Namespace of SAML 2.0 protocol messages.
pub(crate) const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// Namespace of SAML 2.0 metadata.
pub(crate) const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// Namespace of XML Signature.
pub(crate) const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum XmlError {
    /// A DOCTYPE, ENTITY or other markup declaration was found.
    Doctype,
    /// The text is not well-formed (or uses a feature this reader refuses).
    Malformed(String),
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
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => XmlError::Doctype,
        other => XmlError::Malformed(other.to_string()),
    })?;
    convert(doc.root_element(), 0)
}

/// Copies a roxmltree element into the owned tree. Comments and processing instructions are dropped and the
/// text around them is joined, so a comment cannot split a value.
fn convert(node: roxmltree::Node<'_, '_>, depth: usize) -> Result<Element, XmlError> {
    if depth >= MAX_DEPTH {
        return Err(XmlError::Malformed(
            "elements are nested too deeply".to_owned(),
        ));
    }
    let tag = node.tag_name();
    let attrs = node
        .attributes()
        .map(|a| Attr {
            ns: owned_ns(a.namespace()),
            name: a.name().to_owned(),
            value: a.value().to_owned(),
        })
        .collect();
    let mut children = Vec::new();
    for child in node.children() {
        if child.is_element() {
            children.push(Node::Element(convert(child, depth + 1)?));
        } else if child.is_text() {
            let text = child.text().unwrap_or_default();
            if let Some(Node::Text(prev)) = children.last_mut() {
                prev.push_str(text);
            } else {
                children.push(Node::Text(text.to_owned()));
            }
        }
    }
    Ok(Element {
        ns: owned_ns(tag.namespace()),
        name: tag.name().to_owned(),
        attrs,
        children,
    })
}

/// roxmltree reports the namespace of an element under `xmlns=""` as `Some("")`; the owned tree uses `None`.
fn owned_ns(ns: Option<&str>) -> Option<String> {
    ns.filter(|ns| !ns.is_empty()).map(str::to_owned)
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
    fn keeps_the_old_tree_shape() {
        let doc = parse(
            "<r xmlns=\"urn:d\" xml:lang='en' a='x&#10;y'>a<!--c-->b<?pi x?>c<e xmlns=''/> <s:f xmlns:s='urn:s' s:g='1'/></r>",
        )
        .unwrap();
        assert_eq!(doc.ns.as_deref(), Some("urn:d"));
        assert_eq!(
            doc.attrs
                .iter()
                .map(|a| (a.ns.as_deref(), a.name.as_str()))
                .collect::<Vec<_>>(),
            [
                (Some("http://www.w3.org/XML/1998/namespace"), "lang"),
                (None, "a")
            ]
        );
        assert_eq!(doc.attr("a"), Some("x\ny"));
        assert_eq!(doc.attr("lang"), None);
        assert_eq!(doc.children.len(), 4);
        assert_eq!(doc.children[0], Node::Text("abc".to_owned()));
        let e = doc.elements().next().unwrap();
        assert_eq!((e.ns.as_deref(), e.name.as_str()), (None, "e"));
        let f = doc.child("urn:s", "f").unwrap();
        assert_eq!(f.attrs[0].ns.as_deref(), Some("urn:s"));
        assert!(doc.any_descendant(&mut |e| e.is("urn:s", "f")));
    }

    #[test]
    fn limits_depth_and_refuses_every_declaration() {
        let ok = "<a>".repeat(64) + &"</a>".repeat(64);
        assert!(parse(&ok).is_ok());
        let deep = "<a>".repeat(65) + &"</a>".repeat(65);
        assert!(matches!(parse(&deep), Err(XmlError::Malformed(_))));
        assert_eq!(parse("<!DOCTYPE r><r/>"), Err(XmlError::Doctype));
        assert_eq!(parse("<r/><!DOCTYPE r>"), Err(XmlError::Doctype));
        assert_eq!(parse("<!doctype r><r/>"), Err(XmlError::Doctype));
        assert!(matches!(parse("x<r/>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse("<r/>x"), Err(XmlError::Malformed(_))));
        assert!(matches!(
            parse("<r xmlns:a='urn:x' xmlns:b='urn:x' a:c='1' b:c='2'/>"),
            Err(XmlError::Malformed(_))
        ));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b&\"c'"), "a&lt;b&amp;&quot;c&apos;");
    }
}
