//! The XML of WebDAV bodies: `propfind` and `propertyupdate` requests read into a small tree
//! with every name resolved to its namespace, and `multistatus` answers written out.
//!
//! A property's value is kept as XML this module writes itself from the tree (each element
//! declares its own namespace), never as the bytes the client sent: a stored value is always
//! well-formed and means the same wherever it is placed in an answer, whatever prefixes the
//! request used. Requests are bounded by the caller (size) and here (nesting depth).

use std::fmt::Write as _;

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::meta::dav::{PropName, PropUpdate};

/// The DAV: namespace.
pub(super) const DAV: &str = "DAV:";
/// The XML namespace, bound to the `xml` prefix by definition.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// Deepest nesting of elements accepted in a request.
const MAX_DEPTH: usize = 64;

/// An element of a request, its name resolved.
#[derive(Debug, Default)]
pub(super) struct Element {
    pub ns: String,
    pub name: String,
    /// Attributes other than namespace declarations: (namespace, local name, value).
    attrs: Vec<(String, String, String)>,
    children: Vec<Child>,
}

#[derive(Debug)]
enum Child {
    Element(Element),
    Text(String),
}

impl Element {
    fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Child::Element(e) => Some(e),
            Child::Text(_) => None,
        })
    }

    fn prop_name(&self) -> PropName {
        PropName {
            ns: self.ns.clone(),
            name: self.name.clone(),
        }
    }

    /// The element's content as XML that stands on its own (see the module's head).
    pub(super) fn inner_xml(&self) -> String {
        let mut out = String::new();
        for c in &self.children {
            match c {
                Child::Text(t) => out.push_str(&escape(t.as_str())),
                Child::Element(e) => e.write_xml(&mut out),
            }
        }
        out
    }

    fn write_xml(&self, out: &mut String) {
        let _ = if self.ns.is_empty() {
            write!(out, "<{} xmlns=\"\"", self.name)
        } else {
            write!(
                out,
                "<e:{} xmlns:e=\"{}\"",
                self.name,
                escape(self.ns.as_str())
            )
        };
        for (i, (ns, name, value)) in self.attrs.iter().enumerate() {
            let value = escape(value.as_str());
            let _ = match ns.as_str() {
                "" => write!(out, " {name}=\"{value}\""),
                XML_NS => write!(out, " xml:{name}=\"{value}\""),
                ns => write!(
                    out,
                    " xmlns:a{i}=\"{}\" a{i}:{name}=\"{value}\"",
                    escape(ns)
                ),
            };
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        out.push_str(&self.inner_xml());
        let _ = if self.ns.is_empty() {
            write!(out, "</{}>", self.name)
        } else {
            write!(out, "</e:{}>", self.name)
        };
    }
}

/// Reads a request body into its root element.
///
/// # Errors
/// The reason the body is not acceptable XML (a 400 for the caller).
pub(super) fn parse(body: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("the body is not well-formed XML: {e}"))?;
        let ns = match ns {
            ResolveResult::Bound(n) => n.as_ref().to_string(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => return Err(format!("the prefix {p:?} is not declared")),
        };
        match event {
            Event::Start(s) | Event::Empty(s) if root.is_some() => {
                let _ = s;
                return Err("content after the root element".into());
            }
            Event::Start(s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                stack.push(element(&reader, &s, ns)?);
            }
            Event::Empty(s) => {
                let e = element(&reader, &s, ns)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Child::Element(e)),
                    None => root = Some(e),
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("an end tag without a start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Child::Element(done)),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::CData(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_predefined_entity(&r.xml10_content())
                        .ok_or_else(|| format!("unknown entity &{};", r.xml10_content()))?
                        .to_string(),
                    Err(e) => return Err(format!("bad character reference: {e}")),
                };
                push_text(&mut stack, &c)?;
            }
            Event::DocType(_) => return Err("document type declarations are refused".into()),
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("the body ends inside an element".into());
    }
    root.ok_or_else(|| "the body has no element".into())
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(e) => {
            match e.children.last_mut() {
                Some(Child::Text(t)) => t.push_str(text),
                _ => e.children.push(Child::Text(text.to_string())),
            }
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

fn element(reader: &NsReader<&[u8]>, s: &BytesStart<'_>, ns: String) -> Result<Element, String> {
    let name = s.local_name().as_ref().to_string();
    let mut attrs = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| format!("a bad attribute: {e}"))?;
        let key = a.key;
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("a bad attribute value: {e}"))?
            .into_owned();
        if key.as_namespace_binding().is_some() {
            // Namespaces 1.0 forbids binding a prefix to the empty name.
            if key.as_ref() != "xmlns" && value.is_empty() {
                return Err("a prefix is bound to an empty namespace".into());
            }
            continue;
        }
        let (res, local) = reader.resolver().resolve_attribute(key);
        let ans = match res {
            ResolveResult::Bound(n) => n.as_ref().to_string(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => return Err(format!("the prefix {p:?} is not declared")),
        };
        let local = local.as_ref().to_string();
        attrs.push((ans, local, value));
    }
    Ok(Element {
        ns,
        name,
        attrs,
        children: Vec::new(),
    })
}

/// What a PROPFIND asks for.
pub(super) enum Wanted {
    /// Every property (an empty body, or `allprop`).
    All,
    /// The names only (`propname`).
    Names,
    /// These properties.
    Some(Vec<PropName>),
}

/// Reads a PROPFIND body (empty: every property).
pub(super) fn propfind(body: &[u8]) -> Result<Wanted, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Wanted::All);
    }
    let root = parse(body)?;
    if !root.is(DAV, "propfind") {
        return Err("the body is not a DAV:propfind".into());
    }
    for e in root.elements() {
        if e.is(DAV, "allprop") {
            return Ok(Wanted::All);
        }
        if e.is(DAV, "propname") {
            return Ok(Wanted::Names);
        }
        if e.is(DAV, "prop") {
            return Ok(Wanted::Some(e.elements().map(Element::prop_name).collect()));
        }
    }
    Err("a DAV:propfind names allprop, propname or prop".into())
}

/// Reads a PROPPATCH body: its sets and removals, in order.
pub(super) fn proppatch(body: &[u8]) -> Result<Vec<PropUpdate>, String> {
    let root = parse(body)?;
    if !root.is(DAV, "propertyupdate") {
        return Err("the body is not a DAV:propertyupdate".into());
    }
    let mut out = Vec::new();
    for op in root.elements() {
        let set = op.is(DAV, "set");
        if !set && !op.is(DAV, "remove") {
            continue;
        }
        for prop in op.elements().filter(|e| e.is(DAV, "prop")) {
            for p in prop.elements() {
                out.push(if set {
                    PropUpdate::Set(p.prop_name(), p.inner_xml())
                } else {
                    PropUpdate::Remove(p.prop_name())
                });
            }
        }
    }
    if out.is_empty() {
        return Err("the DAV:propertyupdate changes nothing".into());
    }
    Ok(out)
}

/// Reads a LOCK body: whether the lock is shared, and its owner as XML.
pub(super) fn lockinfo(body: &[u8]) -> Result<(bool, String), String> {
    let root = parse(body)?;
    if !root.is(DAV, "lockinfo") {
        return Err("the body is not a DAV:lockinfo".into());
    }
    let scope = root
        .elements()
        .find(|e| e.is(DAV, "lockscope"))
        .and_then(|s| s.elements().next())
        .ok_or("a DAV:lockinfo names its lockscope")?;
    let shared = match (scope.ns.as_str(), scope.name.as_str()) {
        (DAV, "shared") => true,
        (DAV, "exclusive") => false,
        _ => return Err("the lockscope is exclusive or shared".into()),
    };
    let write = root
        .elements()
        .find(|e| e.is(DAV, "locktype"))
        .is_some_and(|t| t.elements().any(|e| e.is(DAV, "write")));
    if !write {
        return Err("only write locks are offered".into());
    }
    let owner = root
        .elements()
        .find(|e| e.is(DAV, "owner"))
        .map(Element::inner_xml)
        .unwrap_or_default();
    Ok((shared, owner))
}

/// A property element of an answer: `<e:name xmlns:e="ns">value</e:name>` (empty when
/// `value` is), the value being XML already.
pub(super) fn prop_xml(out: &mut String, name: &PropName, value: Option<&str>) {
    let open = if name.ns == DAV {
        format!("D:{}", name.name)
    } else if name.ns.is_empty() {
        name.name.clone()
    } else {
        format!("e:{}", name.name)
    };
    let decl = if name.ns == DAV {
        String::new()
    } else if name.ns.is_empty() {
        " xmlns=\"\"".to_string()
    } else {
        format!(" xmlns:e=\"{}\"", escape(name.ns.as_str()))
    };
    match value.filter(|v| !v.is_empty()) {
        None => {
            let _ = write!(out, "<{open}{decl}/>");
        }
        Some(v) => {
            let _ = write!(out, "<{open}{decl}>{v}</{open}>");
        }
    }
}

/// The start of a multistatus answer.
pub(super) const MULTISTATUS_START: &str =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">";
pub(super) const MULTISTATUS_END: &str = "</D:multistatus>\n";

/// One `propstat` of properties already written as XML, with its status.
pub(super) fn propstat(out: &mut String, props: &str, status: u16) {
    let _ = write!(
        out,
        "<D:propstat><D:prop>{props}</D:prop><D:status>HTTP/1.1 {status} {}</D:status></D:propstat>",
        reason(status)
    );
}

pub(super) fn reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_namespaces_whatever_the_prefixes() {
        let body = br#"<?xml version="1.0"?>
<D:propertyupdate xmlns:D="DAV:" xmlns:z="http://ex/"><D:set><D:prop>
<z:a>plain &amp; simple</z:a>
<z:b><x:foo xmlns:x="http://bar/" x:at="1">t</x:foo><nons/></z:b>
<c xmlns="">empty ns</c>
</D:prop></D:set><D:remove><D:prop><z:gone/></D:prop></D:remove></D:propertyupdate>"#;
        let ups = proppatch(body).expect("parses");
        let sets: Vec<(String, String, String)> = ups
            .iter()
            .filter_map(|u| match u {
                PropUpdate::Set(n, v) => Some((n.ns.clone(), n.name.clone(), v.clone())),
                PropUpdate::Remove(_) => None,
            })
            .collect();
        assert_eq!(
            sets[0],
            ("http://ex/".into(), "a".into(), "plain &amp; simple".into())
        );
        assert_eq!(
            sets[1].2,
            "<e:foo xmlns:e=\"http://bar/\" xmlns:a0=\"http://bar/\" a0:at=\"1\">t</e:foo><nons xmlns=\"\"/>"
        );
        assert_eq!(sets[2], (String::new(), "c".into(), "empty ns".into()));
        assert!(matches!(&ups[3], PropUpdate::Remove(n) if n.name == "gone"));
        // What was written out reads back as the same value.
        let again = parse(format!("<r xmlns:q=\"q\">{}</r>", sets[1].2).as_bytes()).expect("xml");
        assert_eq!(again.inner_xml(), sets[1].2);
    }

    #[test]
    fn cut_or_garbled_bodies_never_panic() {
        let samples: [&[u8]; 2] = [
            "<?xml version=\"1.0\"?><D:propertyupdate xmlns:D=\"DAV:\" xmlns:z=\"http://ex/\"><D:set><D:prop><z:a x:y=\"1\" xmlns:x=\"u\">v&amp;&#x10000;<![CDATA[c]]></z:a></D:prop></D:set></D:propertyupdate>".as_bytes(),
            "<D:lockinfo xmlns:D='DAV:'><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>é</D:href></D:owner></D:lockinfo>".as_bytes(),
        ];
        for body in samples {
            for cut in 0..=body.len() {
                let mut b = body[..cut].to_vec();
                let _ = (propfind(&b), proppatch(&b), lockinfo(&b));
                if let Some(x) = b.get_mut(cut / 2) {
                    *x ^= 0x80;
                }
                let _ = (propfind(&b), proppatch(&b), lockinfo(&b));
            }
        }
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        assert!(propfind(b"<D:propfind xmlns:D=\"DAV:\"><D:prop>").is_err());
        assert!(propfind(
            b"<D:propfind xmlns:D=\"DAV:\"><D:prop><bar:foo xmlns:bar=\"\"/></D:prop></D:propfind>"
        )
        .is_err());
        assert!(propfind(b"<x:propfind xmlns:x=\"other\"/>").is_err());
        assert!(matches!(propfind(b""), Ok(Wanted::All)));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
