//! Every JSON example in docs/PROTOCOL.md decodes into its type and encodes back to the same
//! JSON: the documentation cannot drift from the code.

#![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use supervisor_proto::{ClientHello, Request, RequestFrame, ServerFrame, ServerHello};

fn round_trip<T: DeserializeOwned + Serialize>(kind: &str, text: &str) {
    let decoded: T = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{kind} example does not decode: {e}\n{text}"));
    let again = serde_json::to_value(&decoded).unwrap();
    let original: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        again, original,
        "{kind} example changes on a round trip:\n{text}"
    );
}

#[test]
fn every_example_in_protocol_md_decodes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut counts = std::collections::BTreeMap::new();
    let mut verbs = std::collections::BTreeSet::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(kind) = line.strip_prefix("```json ") else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let text = body.join("\n");
        match kind {
            "client-hello" => round_trip::<ClientHello>(kind, &text),
            "server-hello" => round_trip::<ServerHello>(kind, &text),
            "request" => {
                round_trip::<RequestFrame>(kind, &text);
                let frame: RequestFrame = serde_json::from_str(&text).unwrap();
                verbs.insert(frame.request.verb());
            }
            "server-frame" => round_trip::<ServerFrame>(kind, &text),
            other => panic!("unknown example kind {other:?}"),
        }
        *counts.entry(kind.to_owned()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 4, "{counts:?}");
    // Every verb the protocol has is shown.
    for verb in supervisor_proto::Verb::ALL {
        assert!(
            verbs.contains(verb),
            "docs/PROTOCOL.md has no example of {verb}"
        );
    }
}

#[test]
fn unknown_fields_and_verbs_are_refused() {
    assert!(serde_json::from_str::<RequestFrame>(r#"{"id":1,"verb":"stat"}"#).is_err());
    assert!(serde_json::from_str::<RequestFrame>(r#"{"id":1,"verb":"start"}"#).is_err());
    assert!(
        serde_json::from_str::<ClientHello>(r#"{"hello":{"protocol":1,"client":"x"},"x":1}"#)
            .is_err()
    );
    let tail: RequestFrame =
        serde_json::from_str(r#"{"id":1,"verb":"tail","name":"bot"}"#).unwrap();
    assert_eq!(
        tail.request,
        Request::Tail {
            name: "bot".into(),
            stream: Default::default(),
            lines: 10
        }
    );
}
