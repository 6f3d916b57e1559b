//! YAML read into a tree whose every node knows its line, so rule file errors can point at
//! it (`yaml-rust2`'s own tree drops the positions).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node and the line (1-based) it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `null`, `~` or nothing.
    Null,
    /// A scalar; `plain` when unquoted (so `"1"` stays a string).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's text, for keys and string fields.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<Node>)>,
    docs: Vec<Node>,
    error: Option<(usize, String)>,
}

impl Builder {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some((parent, key)) => match &mut parent.kind {
                Kind::Seq(items) => items.push(node),
                Kind::Map(entries) => match key.take() {
                    None => *key = Some(node),
                    Some(k) => entries.push((k, node)),
                },
                _ => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, style, _, _) => {
                let plain = style == TScalarStyle::Plain;
                let kind = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Kind::Null
                } else {
                    Kind::Scalar { text, plain }
                };
                self.push(Node { line, kind });
            }
            Event::SequenceStart(..) => self.stack.push((Node { line, kind: Kind::Seq(Vec::new()) }, None)),
            Event::MappingStart(..) => self.stack.push((Node { line, kind: Kind::Map(Vec::new()) }, None)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.push(node);
                }
            }
            Event::Alias(_) => {
                if self.error.is_none() {
                    self.error = Some((line, "YAML aliases are not supported in rule files".into()));
                }
                self.push(Node { line, kind: Kind::Null });
            }
            _ => {}
        }
    }
}

/// Parses the first document of `src` (`None` for an empty file), or says `(line, error)`.
pub fn parse(src: &str) -> Result<Option<Node>, (usize, String)> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(src);
    parser.load(&mut b, false).map_err(|e| (e.marker().line(), e.info().to_owned()))?;
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.docs.into_iter().next())
}
