//! Answers written as XML-RPC text straight into one string: `getAllProcessInfo` of 200
//! programs is 200 KB of it, and a serializer that goes through serde costs several times
//! the rest of the call (docs/BENCHMARKS.md, "supervisord's XML-RPC"). Calls are still read
//! by dxr, which also checks what is written here in the tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use dxr::{Fault, Value};

/// What a method returns: a value, or (for the process structs, the bulk of what monitors ask
/// for) a `<value>` already written as text.
#[derive(Debug)]
pub enum Answer {
    Value(Value),
    Xml(String),
}

impl From<Value> for Answer {
    fn from(v: Value) -> Self {
        Answer::Value(v)
    }
}

fn answer_into(out: &mut String, answer: &Answer) {
    match answer {
        Answer::Value(v) => value_into(out, v),
        Answer::Xml(xml) => out.push_str(xml),
    }
}

/// A `methodResponse` with one value.
pub fn response(answer: &Answer) -> String {
    let mut out = String::with_capacity(match answer {
        Answer::Xml(xml) => xml.len() + 96,
        Answer::Value(_) => 1024,
    });
    out.push_str("<?xml version=\"1.0\"?><methodResponse><params><param>");
    answer_into(&mut out, answer);
    out.push_str("</param></params></methodResponse>");
    out
}

/// `system.multicall`'s value: each result in an array of one, each fault as its struct.
pub fn multicall(results: &[Result<Answer, Fault>]) -> Answer {
    let mut out = String::with_capacity(1024);
    out.push_str("<value><array><data>");
    for r in results {
        match r {
            Ok(answer) => {
                out.push_str("<value><array><data>");
                answer_into(&mut out, answer);
                out.push_str("</data></array></value>");
            }
            Err(f) => fault_struct_into(&mut out, f),
        }
    }
    out.push_str("</data></array></value>");
    Answer::Xml(out)
}

/// One field of a struct written directly.
#[derive(Debug)]
pub enum Field<'a> {
    Int(i64),
    Str(&'a str),
}

/// A `<value><struct>` of `members`, written directly (integers past i4 are clamped).
pub fn struct_into(out: &mut String, members: &[(&str, Field<'_>)]) {
    out.push_str("<value><struct>");
    for (name, field) in members {
        out.push_str("<member><name>");
        out.push_str(name);
        out.push_str("</name><value>");
        match field {
            Field::Int(n) => {
                let n = i32::try_from(*n).unwrap_or(if *n < 0 { i32::MIN } else { i32::MAX });
                out.push_str("<i4>");
                out.push_str(itoa::Buffer::new().format(n));
                out.push_str("</i4>");
            }
            Field::Str(s) => {
                out.push_str("<string>");
                escape_into(out, s);
                out.push_str("</string>");
            }
        }
        out.push_str("</value></member>");
    }
    out.push_str("</struct></value>");
}

fn fault_struct_into(out: &mut String, fault: &Fault) {
    struct_into(
        out,
        &[
            ("faultCode", Field::Int(i64::from(fault.code()))),
            ("faultString", Field::Str(fault.string())),
        ],
    );
}

/// A `methodResponse` with a fault.
pub fn fault(fault: &Fault) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\"?><methodResponse><fault>");
    fault_struct_into(&mut out, fault);
    out.push_str("</fault></methodResponse>");
    out
}

fn value_into(out: &mut String, value: &Value) {
    out.push_str("<value>");
    match value {
        Value::Integer(n) => {
            out.push_str("<i4>");
            out.push_str(itoa::Buffer::new().format(*n));
            out.push_str("</i4>");
        }
        Value::Boolean(b) => {
            out.push_str(if *b {
                "<boolean>1</boolean>"
            } else {
                "<boolean>0</boolean>"
            });
        }
        Value::String(s) => {
            out.push_str("<string>");
            escape_into(out, s);
            out.push_str("</string>");
        }
        Value::Double(d) => {
            let _ = write!(out, "<double>{d:?}</double>");
        }
        Value::DateTime(dt) => {
            let _ = write!(out, "<dateTime.iso8601>{dt}</dateTime.iso8601>");
        }
        Value::Base64(bytes) => {
            out.push_str("<base64>");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
            out.push_str("</base64>");
        }
        Value::Struct(members) => {
            out.push_str("<struct>");
            for (name, v) in members {
                out.push_str("<member><name>");
                escape_into(out, name);
                out.push_str("</name>");
                value_into(out, v);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for v in items {
                value_into(out, v);
            }
            out.push_str("</data></array>");
        }
    }
    out.push_str("</value>");
}

/// XML's three characters that text may not hold as they are, and the control characters
/// XML 1.0 does not allow at all (a program's log may hold any byte): those become U+FFFD.
fn escape_into(out: &mut String, s: &str) {
    // Most text (names, states, descriptions) needs none of it: one pass, one copy. 0xEF
    // starts U+FFFE and U+FFFF (and other characters, which the slow path keeps).
    let plain = !s.bytes().any(|b| {
        matches!(b, b'&' | b'<' | b'>' | 0xEF) || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    });
    if plain {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// A struct value from its members, as the methods' answers are built.
pub(super) fn strukt<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Struct(
        members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let value = Value::Array(vec![
            Value::Integer(-7),
            Value::Boolean(true),
            Value::String("a < b & c > d\n\u{1b}[31mred".into()),
            Value::Double(1.5),
            Value::Base64(vec![0, 1, 2, 255]),
            Value::Struct(
                [
                    ("name".to_owned(), Value::String("web".into())),
                    ("pid".to_owned(), Value::Integer(42)),
                ]
                .into_iter()
                .collect(),
            ),
            Value::Array(Vec::new()),
        ]);
        let back = dxr::MethodResponse::from_xml(&response(&Answer::Value(value.clone()))).unwrap();
        let mut want = value;
        if let Value::Array(items) = &mut want {
            items[2] = Value::String("a < b & c > d\n\u{FFFD}[31mred".into());
        }
        assert_eq!(back.value, want);
        let f = Fault::new(10, "BAD_NAME: <web>".into());
        assert_eq!(dxr::FaultResponse::from_xml(&fault(&f)).unwrap().fault, f);
        // A struct written directly, and a multicall of a value, a fault and such a struct.
        let mut direct = String::new();
        struct_into(
            &mut direct,
            &[("pid", Field::Int(42)), ("name", Field::Str("a&b"))],
        );
        let calls = [
            Ok(Answer::Value(Value::Integer(1))),
            Err(f.clone()),
            Ok(Answer::Xml(direct)),
        ];
        let back = dxr::MethodResponse::from_xml(&response(&multicall(&calls))).unwrap();
        let strukt = |pairs: &[(&str, Value)]| {
            Value::Struct(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            )
        };
        assert_eq!(
            back.value,
            Value::Array(vec![
                Value::Array(vec![Value::Integer(1)]),
                strukt(&[
                    ("faultCode", Value::Integer(10)),
                    ("faultString", Value::String("BAD_NAME: <web>".into())),
                ]),
                Value::Array(vec![strukt(&[
                    ("pid", Value::Integer(42)),
                    ("name", Value::String("a&b".into())),
                ])]),
            ])
        );
    }
}
