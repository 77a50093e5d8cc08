//! Holds the protocol's two hand-written descriptions, `docs/protocol.md` and the JSDoc typedefs
//! in `web/sdk/protocol.js`, to the Rust message types (read through `visavis_protocol::schema`):
//! for each direction the three must name the same message kinds, and for each kind the same
//! fields. Every disagreement is reported as its own line naming the kind, the field and the
//! source that lacks it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use visavis_protocol::schema;

const DOCS: &str = "docs/protocol.md";
const JSDOC: &str = "web/sdk/protocol.js";

/// Message kind → the names of its fields, without `type` and the envelope.
type Messages = BTreeMap<String, BTreeSet<String>>;

/// One direction of the protocol and where each source describes it.
struct Direction {
    name: &'static str,
    /// The heading of the docs section listing its messages.
    section: &'static str,
    /// The JSDoc typedef of everything sent this way, envelope included.
    frame: &'static str,
    /// The envelope fields (the sequence number), which are not message fields.
    envelope: Vec<String>,
    rust: Vec<schema::Message>,
}

fn directions() -> [Direction; 2] {
    [
        Direction {
            name: "client → server",
            section: "## Client → server",
            frame: "ClientFrame",
            envelope: schema::client_envelope(),
            rust: schema::client_messages(),
        },
        Direction {
            name: "server → client",
            section: "## Server → client",
            frame: "ServerFrame",
            envelope: schema::server_envelope(),
            rust: schema::server_messages(),
        },
    ]
}

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{}: {err}", full.display()))
}

#[test]
fn docs_jsdoc_and_rust_types_name_the_same_messages_and_fields() {
    let (docs, js) = (read(DOCS), read(JSDOC));
    let typedefs = typedefs(&js);
    let mut problems = Vec::new();
    for dir in directions() {
        let rust: Messages = dir
            .rust
            .iter()
            .map(|m| (m.kind.to_owned(), m.fields.iter().cloned().collect()))
            .collect();
        let documented = docs_messages(&docs, dir.section, &dir.envelope, &mut problems);
        let typed = jsdoc_messages(&typedefs, dir.frame, &dir.envelope, &mut problems);
        problems.extend(compare(
            dir.name,
            &[("the Rust types", &rust), (DOCS, &documented), (JSDOC, &typed)],
        ));
    }
    assert!(
        problems.is_empty(),
        "the protocol's descriptions disagree:\n{}",
        problems.join("\n")
    );
}

/// One line per message kind, and per field of a kind, that some sources have and others lack.
fn compare(direction: &str, sources: &[(&str, &Messages)]) -> Vec<String> {
    /// The names of `sources` for which `has` holds, and of those for which it does not.
    fn split<'a>(
        sources: &[(&'a str, &Messages)],
        has: impl Fn(&Messages) -> bool,
    ) -> (String, Vec<&'a str>) {
        let (with, without): (Vec<_>, Vec<_>) = sources.iter().partition(|(_, msgs)| has(msgs));
        let with: Vec<&str> = with.iter().map(|(name, _)| *name).collect();
        (with.join(", "), without.iter().map(|(name, _)| *name).collect())
    }
    let mut problems = Vec::new();
    let kinds: BTreeSet<&String> = sources.iter().flat_map(|(_, msgs)| msgs.keys()).collect();
    for kind in kinds {
        let (present, lacking) = split(sources, |msgs| msgs.contains_key(kind));
        for name in lacking {
            problems.push(format!(
                "{direction}: message `{kind}` is missing from {name} (present in {present})"
            ));
        }
        let have: Vec<(&str, &Messages)> = sources
            .iter()
            .filter(|(_, msgs)| msgs.contains_key(kind))
            .copied()
            .collect();
        let fields: BTreeSet<&String> = have.iter().flat_map(|(_, msgs)| &msgs[kind]).collect();
        for field in fields {
            let (present, lacking) = split(&have, |msgs| msgs[kind].contains(field));
            for name in lacking {
                problems.push(format!(
                    "{direction}: `{kind}` field `{field}` is missing from {name} (present in {present})"
                ));
            }
        }
    }
    problems
}

/// The messages `docs` documents in its section `section`: each `### ` heading names one or more
/// kinds in backticks, and the JSON objects in the ```json blocks below it are their examples.
/// A kind's fields are the keys of all its examples (an optional field may show in one only).
fn docs_messages(docs: &str, section: &str, envelope: &[String], problems: &mut Vec<String>) -> Messages {
    let mut msgs = Messages::new();
    let mut examples: BTreeMap<String, usize> = BTreeMap::new();
    let (mut in_section, mut in_fence) = (false, false);
    let mut heading = (String::new(), Vec::new());
    let mut block: Option<String> = None;
    for line in docs.lines() {
        if in_fence {
            if line.trim_start().starts_with("```") {
                in_fence = false;
                if let Some(json) = block.take() {
                    let (title, kinds) = &heading;
                    if kinds.is_empty() {
                        problems.push(format!(
                            "{DOCS}: a JSON example in {section} before any `### ` heading"
                        ));
                    }
                    for (kind, fields) in examples_in(&json, title, kinds, envelope, problems) {
                        *examples.entry(kind.clone()).or_default() += 1;
                        msgs.entry(kind).or_default().extend(fields);
                    }
                }
            } else if let Some(block) = &mut block {
                block.push_str(line);
                block.push('\n');
            }
        } else if let Some(info) = line.trim_start().strip_prefix("```") {
            in_fence = true;
            block = (in_section && info.trim() == "json").then(String::new);
        } else if line.starts_with("## ") {
            in_section = line.trim_end() == section;
            heading = (String::new(), Vec::new());
        } else if let Some(title) = line.strip_prefix("### ").filter(|_| in_section) {
            // The kinds are the backticked words: "`description`, `candidate` (relayed)".
            let kinds: Vec<String> = title.split('`').skip(1).step_by(2).map(str::to_owned).collect();
            for kind in &kinds {
                if msgs.insert(kind.clone(), BTreeSet::new()).is_some() {
                    problems.push(format!("{DOCS}: `{kind}` has two headings in {section}"));
                }
            }
            heading = (title.to_owned(), kinds);
        }
    }
    if !docs.lines().any(|line| line.trim_end() == section) {
        problems.push(format!("{DOCS}: no section {section}"));
    }
    for kind in msgs.keys().filter(|kind| !examples.contains_key(*kind)) {
        problems.push(format!(
            "{DOCS}: `{kind}` in {section} has no JSON example, so no documented fields"
        ));
    }
    msgs
}

/// The examples in one ```json block under the heading `title` (naming `kinds`): each one's kind
/// and keys, without `type`, the envelope, and the placeholder `"...": "..."` (which stands for
/// fields shown in another example).
fn examples_in(
    json: &str,
    title: &str,
    kinds: &[String],
    envelope: &[String],
    problems: &mut Vec<String>,
) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    // One block may hold several examples, each spanning lines: a stream of JSON values.
    for value in serde_json::Deserializer::from_str(json).into_iter::<Value>() {
        let object = match value {
            Ok(Value::Object(object)) => object,
            Ok(other) => {
                problems.push(format!(
                    "{DOCS}: an example under \"### {title}\" is not an object: {other}"
                ));
                continue;
            }
            Err(err) => {
                problems.push(format!(
                    "{DOCS}: an example under \"### {title}\" is not JSON: {err}"
                ));
                break;
            }
        };
        let Some(kind) = object.get("type").and_then(Value::as_str) else {
            problems.push(format!(
                "{DOCS}: an example under \"### {title}\" has no string `type`"
            ));
            continue;
        };
        if !kinds.iter().any(|k| k == kind) {
            problems.push(format!("{DOCS}: an example of `{kind}` under \"### {title}\""));
            continue;
        }
        let fields = object
            .iter()
            .filter(|(key, value)| {
                let placeholder = *key == "..." && value.as_str() == Some("...");
                *key != "type" && !envelope.contains(key) && !placeholder
            })
            .map(|(key, _)| key.clone())
            .collect();
        found.push((kind.to_owned(), fields));
    }
    found
}

/// The `@typedef {<type>} <Name>` definitions in the doc comments of `js`: name → type text.
fn typedefs(js: &str) -> BTreeMap<String, String> {
    // The doc comments' text, without each line's leading `*`.
    let mut comments = String::new();
    for comment in js.split("/**").skip(1) {
        let body = comment.split("*/").next().unwrap_or_default();
        for line in body.lines() {
            let line = line.trim_start();
            comments.push_str(line.strip_prefix('*').unwrap_or(line));
            comments.push('\n');
        }
    }
    let mut defs = BTreeMap::new();
    for def in comments.split("@typedef").skip(1) {
        let Some(body) = def.trim_start().strip_prefix('{') else {
            continue;
        };
        // The type runs to the brace matching the opening one.
        let mut depth = 1;
        let Some(end) = body.find(|c| {
            depth += match c {
                '{' => 1,
                '}' => -1,
                _ => 0,
            };
            depth == 0
        }) else {
            continue;
        };
        let name: String = body[end + 1..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
            .collect();
        defs.insert(name, body[..end].to_owned());
    }
    defs
}

/// The messages of the JSDoc typedef `frame`: a union of object types (directly, or through
/// other typedefs, parentheses and intersections) whose `type` is a string literal or a union of
/// them, each carrying the envelope.
fn jsdoc_messages(
    typedefs: &BTreeMap<String, String>,
    frame: &str,
    envelope: &[String],
    problems: &mut Vec<String>,
) -> Messages {
    let mut msgs = Messages::new();
    let shapes = match TypeExpr::shapes_of(typedefs, frame, 0) {
        Ok(shapes) => shapes,
        Err(err) => {
            problems.push(format!("{JSDOC}: typedef {frame}: {err}"));
            return msgs;
        }
    };
    for Shape { kinds, mut fields } in shapes {
        let Some(kinds) = kinds.filter(|kinds| !kinds.is_empty()) else {
            problems.push(format!("{JSDOC}: a member of {frame} has no `type`: {fields:?}"));
            continue;
        };
        for field in envelope {
            if !fields.remove(field) {
                let kinds = kinds.join("` | `");
                problems.push(format!(
                    "{JSDOC}: `{kinds}` in {frame} lacks the envelope field `{field}`"
                ));
            }
        }
        for kind in kinds {
            if msgs.insert(kind.clone(), fields.clone()).is_some() {
                problems.push(format!("{JSDOC}: `{kind}` appears twice in {frame}"));
            }
        }
    }
    msgs
}

/// One object type: the kinds its `type` allows (`None`: it has no `type`) and its field names.
#[derive(Debug, Clone, Default)]
struct Shape {
    kinds: Option<Vec<String>>,
    fields: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Str(String),
    Punct(char),
}

fn tokens(text: &str) -> Vec<Token> {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == '.';
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' {
            out.push(Token::Str(chars.by_ref().take_while(|&d| d != c).collect()));
        } else if word(c) {
            let mut name = String::from(c);
            while let Some(d) = chars.next_if(|&d| word(d)) {
                name.push(d);
            }
            out.push(Token::Name(name));
        } else if !c.is_whitespace() {
            out.push(Token::Punct(c));
        }
    }
    out
}

/// A recursive-descent reader of the TypeScript type syntax the message typedefs use:
/// `A | B`, `A & B`, `(A)`, typedef names, and object types `{name?: <type>, ...}` whose field
/// types are skipped except for `type`.
struct TypeExpr<'d> {
    typedefs: &'d BTreeMap<String, String>,
    tokens: Vec<Token>,
    at: usize,
    /// How many typedef names deep this is, to stop on a cycle.
    depth: usize,
}

impl TypeExpr<'_> {
    fn shapes_of(
        typedefs: &BTreeMap<String, String>,
        name: &str,
        depth: usize,
    ) -> Result<Vec<Shape>, String> {
        if depth > 16 {
            return Err(format!("`{name}` refers to itself"));
        }
        let text = typedefs
            .get(name)
            .ok_or_else(|| format!("`{name}` is not a typedef"))?;
        let mut expr = TypeExpr {
            typedefs,
            tokens: tokens(text),
            at: 0,
            depth,
        };
        let shapes = expr.union()?;
        match expr.tokens.get(expr.at) {
            None => Ok(shapes),
            Some(token) => Err(format!("unexpected {token:?} in `{name}`")),
        }
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.tokens.get(self.at) == Some(&Token::Punct(c));
        self.at += usize::from(found);
        found
    }

    fn union(&mut self) -> Result<Vec<Shape>, String> {
        self.eat('|');
        let mut shapes = self.intersection()?;
        while self.eat('|') {
            shapes.extend(self.intersection()?);
        }
        Ok(shapes)
    }

    fn intersection(&mut self) -> Result<Vec<Shape>, String> {
        let mut shapes = self.primary()?;
        while self.eat('&') {
            let right = self.primary()?;
            // (A | B) & C is (A & C) | (B & C).
            shapes = shapes
                .iter()
                .flat_map(|a| right.iter().map(move |b| (a, b)))
                .map(|(a, b)| Shape {
                    kinds: match (&a.kinds, &b.kinds) {
                        (Some(x), Some(y)) => Some(x.iter().filter(|k| y.contains(k)).cloned().collect()),
                        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
                        (None, None) => None,
                    },
                    fields: a.fields.union(&b.fields).cloned().collect(),
                })
                .collect();
        }
        Ok(shapes)
    }

    fn primary(&mut self) -> Result<Vec<Shape>, String> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            Some(Token::Punct('(')) => {
                let shapes = self.union()?;
                if !self.eat(')') {
                    return Err("unclosed `(`".into());
                }
                Ok(shapes)
            }
            Some(Token::Punct('{')) => Ok(vec![self.object()?]),
            Some(Token::Name(name)) => Self::shapes_of(self.typedefs, &name, self.depth + 1),
            other => Err(format!(
                "expected an object type or a typedef name, found {other:?}"
            )),
        }
    }

    /// The rest of an object type, after its `{`.
    fn object(&mut self) -> Result<Shape, String> {
        let mut shape = Shape::default();
        loop {
            let token = self.tokens.get(self.at).cloned();
            self.at += 1;
            let field = match token {
                Some(Token::Punct('}')) => return Ok(shape),
                Some(Token::Name(field)) => field,
                other => return Err(format!("expected a field name, found {other:?}")),
            };
            self.eat('?');
            if !self.eat(':') {
                return Err(format!("expected `:` after `{field}`"));
            }
            let value = self.field_type()?;
            if field == "type" {
                let mut kinds = Vec::new();
                for token in value {
                    match token {
                        Token::Str(kind) => kinds.push(kind),
                        Token::Punct('|') => {}
                        other => return Err(format!("`type` is not a union of strings: {other:?}")),
                    }
                }
                shape.kinds = Some(kinds);
            } else {
                shape.fields.insert(field);
            }
        }
    }

    /// The tokens of a field's type, up to the `,` or `;` after it (consumed) or the object's
    /// closing `}` (left).
    fn field_type(&mut self) -> Result<Vec<Token>, String> {
        let (start, mut depth) = (self.at, 0usize);
        loop {
            match self.tokens.get(self.at) {
                None => return Err("unclosed object type".into()),
                Some(Token::Punct(',' | ';' | '}')) if depth == 0 => break,
                Some(Token::Punct('{' | '(' | '[' | '<')) => depth += 1,
                Some(Token::Punct('}' | ')' | ']' | '>')) => depth = depth.saturating_sub(1),
                Some(_) => {}
            }
            self.at += 1;
        }
        let value = self.tokens[start..self.at].to_vec();
        if !self.eat(',') {
            self.eat(';');
        }
        Ok(value)
    }
}

fn messages(list: &[(&str, &[&str])]) -> Messages {
    list.iter()
        .map(|(kind, fields)| (kind.to_string(), fields.iter().map(|f| f.to_string()).collect()))
        .collect()
}

#[test]
fn docs_examples_are_read_per_heading_and_section() {
    let docs = r##"
## Server → client

### `a`, `b` (two at once)

```json
{"sn": 1, "type": "a", "x": 1,
 "y": {"type": "nested"}}
{"type": "a", "z": null, "...": "..."}
{"type": "b"}
```

### `c`

No example.

## Another section

```json
{"type": "d", "w": 1}
```
"##;
    let mut problems = Vec::new();
    let msgs = docs_messages(docs, "## Server → client", &["sn".into()], &mut problems);
    assert_eq!(msgs, messages(&[("a", &["x", "y", "z"]), ("b", &[]), ("c", &[])]));
    assert_eq!(
        problems,
        [format!(
            "{DOCS}: `c` in ## Server → client has no JSON example, so no documented fields"
        )]
    );
}

#[test]
fn jsdoc_frames_expand_through_typedefs_unions_and_intersections() {
    let js = "
/**
 * @typedef {{callId: number, list: Map<string, number[]>}} Inner
 * @typedef {{type: 'p' | 'q', to?: number | null; at: {x: 1}}
 *   | ({type: 'r'} & Inner)} Msg
 * @typedef {Msg & {sn?: number}} Frame
 * @typedef {{type: 's'} | Inner} Broken
 */
/** @type {{cn: number}} not a typedef */
";
    let defs = typedefs(js);
    let mut problems = Vec::new();
    let msgs = jsdoc_messages(&defs, "Frame", &["sn".into()], &mut problems);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(
        msgs,
        messages(&[
            ("p", &["to", "at"]),
            ("q", &["to", "at"]),
            ("r", &["callId", "list"])
        ])
    );
    jsdoc_messages(&defs, "Broken", &[], &mut problems);
    jsdoc_messages(&defs, "Msg", &["sn".into()], &mut problems);
    assert_eq!(
        problems,
        [
            format!(r#"{JSDOC}: a member of Broken has no `type`: {{"callId", "list"}}"#),
            format!("{JSDOC}: `p` | `q` in Msg lacks the envelope field `sn`"),
            format!("{JSDOC}: `r` in Msg lacks the envelope field `sn`"),
        ]
    );
}

#[test]
fn disagreements_name_the_kind_the_field_and_the_source_that_lacks_it() {
    let rust = messages(&[("a", &["x"]), ("b", &[])]);
    let docs = messages(&[("a", &["x", "y"])]);
    let js = messages(&[("a", &[]), ("b", &[])]);
    assert_eq!(
        compare("c → s", &[("R", &rust), ("D", &docs), ("J", &js)]),
        [
            "c → s: `a` field `x` is missing from J (present in R, D)",
            "c → s: `a` field `y` is missing from R (present in D)",
            "c → s: `a` field `y` is missing from J (present in D)",
            "c → s: message `b` is missing from D (present in R, J)",
        ]
    );
}
