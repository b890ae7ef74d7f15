//! Where in a body a response broke, as a JSON path (`msg_list[3].text.content`), found from
//! serde_json's error position by one walk over the text.
//!
//! The alternative, decoding the body a second time through a path-tracking deserializer,
//! makes the compiler build a second decoder for every response type: a sixth of
//! wecom-kf's machine code, paid by every user's build for an error message.

/// The path of the value serde_json was reading at `line`:`column` (its 1-based line and
/// its column, the bytes of that line read so far) of `body`; `.` for the whole body or
/// when the error has no position.
pub(crate) fn path_at(body: &[u8], line: usize, column: usize) -> String {
    let Some(end) = offset_of(body, line, column) else {
        return ".".to_owned();
    };
    let mut frames: Vec<Frame> = Vec::new();
    let mut at = 0;
    while at < end {
        match body[at] {
            b'{' => frames.push(Frame::Object {
                key: None,
                awaiting_key: true,
            }),
            b'[' => frames.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                frames.pop();
            }
            b',' => match frames.last_mut() {
                Some(Frame::Array { index }) => *index = index.saturating_add(1),
                Some(Frame::Object { key, awaiting_key }) => {
                    *key = None;
                    *awaiting_key = true;
                }
                None => {}
            },
            b'"' => {
                let text_end = string_end(body, at + 1);
                if let Some(Frame::Object { key, awaiting_key }) = frames.last_mut()
                    && *awaiting_key
                {
                    let text = &body[at + 1..text_end.min(body.len())];
                    *key = Some(String::from_utf8_lossy(text).into_owned());
                    *awaiting_key = false;
                }
                // Past the closing quote; a string still open at `end` ends the walk.
                at = text_end;
            }
            _ => {}
        }
        at += 1;
    }
    render(&frames)
}

/// One container the walk is inside.
enum Frame {
    /// `key` is the member being read, once its name has been.
    Object {
        key: Option<String>,
        awaiting_key: bool,
    },
    /// `index` counts the commas seen.
    Array { index: usize },
}

/// The byte offset of serde_json's `line`:`column`, within the body.
fn offset_of(body: &[u8], line: usize, column: usize) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let mut line_start = 0;
    if line > 1 {
        let newline = body
            .iter()
            .enumerate()
            .filter(|&(_, &byte)| byte == b'\n')
            .nth(line - 2)?
            .0;
        line_start = newline + 1;
    }
    Some(line_start.saturating_add(column).min(body.len()))
}

/// The index of the quote that closes the string whose text starts at `from` (the body's
/// length if it never closes).
fn string_end(body: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(&byte) = body.get(at) {
        match byte {
            b'"' => return at,
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    body.len()
}

/// `a.b[2].c`, the way paths read in errors; `.` for none.
fn render(frames: &[Frame]) -> String {
    let mut path = String::new();
    for frame in frames {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            // Inside an object, between members: the object itself.
            Frame::Object { key: None, .. } => break,
            Frame::Array { index } => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    if path.is_empty() {
        path.push('.');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::path_at;

    /// The path where `serde_json` stopped reading `body` as `T`.
    fn broken_at<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: &str) -> String {
        let error = serde_json::from_str::<T>(body).unwrap_err();
        path_at(body.as_bytes(), error.line(), error.column())
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Page {
        has_more: u8,
        #[serde(default)]
        msg_list: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        msgid: String,
        text: Option<Text>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Text {
        content: String,
    }

    #[test]
    fn a_scalar_of_the_wrong_type_is_named() {
        assert_eq!(broken_at::<Page>(r#"{"has_more": "yes"}"#), "has_more");
        let body = r#"{"has_more": 0, "msg_list": [{"msgid": "a"}, {"msgid": "b", "text": {"content": 5}}]}"#;
        assert_eq!(broken_at::<Page>(body), "msg_list[1].text.content");
    }

    #[test]
    fn a_missing_field_names_its_object() {
        assert_eq!(broken_at::<Page>(r#"{"msg_list": []}"#), ".");
        let body = "{\"has_more\": 0,\n \"msg_list\": [{\"msgid\": \"a\"},\n {\"text\": {\"content\": \"x\"}}]}";
        assert_eq!(broken_at::<Page>(body), "msg_list[1]");
    }

    #[test]
    fn keys_and_strings_with_escapes_and_brackets_do_not_mislead() {
        let body = r#"{"has_more": 0, "msg_list": [{"msgid": "a\"],{", "text": {"content": "}]"}}, {"msgid": 1}]}"#;
        assert_eq!(broken_at::<Page>(body), "msg_list[1].msgid");
    }

    #[test]
    fn a_body_cut_short_or_without_position_reads_as_far_as_it_goes() {
        assert_eq!(
            path_at(br#"{"has_more": 0, "msg_list": [{"msgid": "a"#, 1, 40),
            "msg_list[0].msgid"
        );
        assert_eq!(path_at(b"{}", 0, 0), ".");
        assert_eq!(path_at(b"{}", 7, 3), ".");
    }

    /// Every scalar of `body` replaced in turn by a value of another type, and every member
    /// left out in turn: where decoding fails, the path is the one a path-tracking
    /// deserializer reports. Returns how many broken bodies were compared.
    fn agrees_with_a_tracking_deserializer<T: serde::de::DeserializeOwned>(
        body: &serde_json::Value,
    ) -> usize {
        let mut members = Vec::new();
        walk(body, &mut Vec::new(), &mut members);
        let mut compared = 0;
        for (pointer, is_scalar) in members {
            let mut mutations = vec![false];
            if is_scalar {
                mutations.push(true);
            }
            for retype in mutations {
                let mut broken = body.clone();
                if retype {
                    let leaf = broken.pointer_mut(&pointer).unwrap();
                    *leaf = match leaf {
                        serde_json::Value::String(_) => serde_json::json!([1]),
                        _ => serde_json::json!({"x": "y"}),
                    };
                } else {
                    let (parent, key) = pointer.rsplit_once('/').unwrap();
                    match broken.pointer_mut(parent).unwrap() {
                        serde_json::Value::Object(fields) => drop(fields.remove(key)),
                        serde_json::Value::Array(items) => drop(items.remove(key.parse().unwrap())),
                        _ => unreachable!("a member's parent is a container"),
                    }
                }
                let text = serde_json::to_string_pretty(&broken).unwrap();
                let Err(error) = serde_json::from_str::<T>(&text) else {
                    continue;
                };
                let mut de = serde_json::Deserializer::from_str(&text);
                let tracked = serde_path_to_error::deserialize::<_, T>(&mut de)
                    .err()
                    .unwrap()
                    .path()
                    .to_string();
                let ours = path_at(text.as_bytes(), error.line(), error.column());
                assert_eq!(ours, tracked, "{pointer} broken in\n{text}\n{error}");
                compared += 1;
            }
        }
        compared
    }

    /// Every member's JSON pointer, and whether it is a scalar.
    fn walk(value: &serde_json::Value, at: &mut Vec<String>, out: &mut Vec<(String, bool)>) {
        let pointer = |at: &[String]| at.iter().map(|segment| format!("/{segment}")).collect();
        let children: Vec<(String, &serde_json::Value)> = match value {
            serde_json::Value::Object(fields) => {
                fields.iter().map(|(k, v)| (k.clone(), v)).collect()
            }
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            _ => Vec::new(),
        };
        if !at.is_empty() {
            out.push((
                pointer(at),
                children.is_empty() && !value.is_object() && !value.is_array(),
            ));
        }
        for (segment, child) in children {
            at.push(segment);
            walk(child, at, out);
            at.pop();
        }
    }

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn paths_match_a_tracking_deserializer_on_the_generated_types() {
        use crate::types::*;
        let received = fixture("received_examples");
        let items: Vec<_> = received.as_object().unwrap().values().cloned().collect();
        let page = serde_json::json!({"errcode": 0, "errmsg": "ok", "next_cursor": "c", "has_more": 0, "msg_list": items});
        let responses = fixture("response_examples");
        let compared = [
            agrees_with_a_tracking_deserializer::<SyncMsgResponse>(&page),
            agrees_with_a_tracking_deserializer::<AccountAddResponse>(&responses["account_add"]),
            agrees_with_a_tracking_deserializer::<AccountListResponse>(&responses["account_list"]),
            agrees_with_a_tracking_deserializer::<ContactWayResponse>(
                &responses["add_contact_way"],
            ),
            agrees_with_a_tracking_deserializer::<ServicerListResponse>(
                &responses["servicer_list"],
            ),
            agrees_with_a_tracking_deserializer::<ServiceStateResponse>(
                &responses["service_state_get"],
            ),
            agrees_with_a_tracking_deserializer::<CustomerBatchgetResponse>(
                &responses["customer_batchget"],
            ),
            agrees_with_a_tracking_deserializer::<CorpQualificationResponse>(
                &responses["get_corp_qualification"],
            ),
        ];
        let compared: usize = compared.iter().sum();
        // 34 when written: most members are optional, and a broken received item is kept.
        assert!(compared >= 30, "only {compared} broken bodies compared");
    }
}
