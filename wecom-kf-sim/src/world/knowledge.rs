//! The knowledge base (知识库, docs 95971 and 95972): groups of intents,
//! each a question, similar questions and an answer with attachments, behind
//! `kf/knowledge/{add,mod,del,list}_{group,intent}`.
//!
//! The shapes follow the SDKs that wrap these endpoints; the limits are the simulator's
//! reading of the docs, not confirmed, and so are the refusals (all 40058, "invalid
//! parameter", with an `errmsg` saying which):
//! * a group's `name` is 1 to 12 characters and unique; a `默认分组` (`is_default: 1`)
//!   exists from the start and can't be deleted; deleting a group deletes its intents;
//! * `question.text.content` is 1 to 200 characters, `similar_questions.items` at most 100
//!   of the same, `answers` exactly one, its `text.content` 1 to 500 characters, with at
//!   most 4 `attachments` of `msgtype` `image` or `video` (a `media_id` the simulator
//!   holds, else 40007), `link` (`title`, `url`) or `miniprogram` (`title`, `appid`,
//!   `pagepath`, `thumb_media_id`);
//! * lists page by `cursor` and `limit` (1 to 1000, 1000 by default) with `next_cursor`
//!   and `has_more` like `sync_msg`, and filter by `group_id` (and `intent_id`);
//!   attachments list an image or video by its file `name`, as one SDK reads them.
//! * At most 1000 groups and 10,000 intents, to keep the simulator's memory bounded.

use serde_json::{Value, json};

use super::World;
use crate::body::{self, Refusal};

const DEFAULT_GROUP: &str = "默认分组";
const MAX_GROUPS: usize = 1000;
const MAX_INTENTS: usize = 10_000;
const NAME_CHARS: usize = 12;
const QUESTION_CHARS: usize = 200;
const MAX_SIMILAR: usize = 100;
const ANSWER_CHARS: usize = 500;
const MAX_ATTACHMENTS: usize = 4;
const MAX_PAGE: u64 = 1000;

struct Group {
    serial: u64,
    id: String,
    name: String,
    is_default: bool,
}

struct Intent {
    serial: u64,
    id: String,
    group_id: String,
    question: String,
    similar: Vec<String>,
    answer: String,
    /// As listed: images and videos by name.
    attachments: Vec<Value>,
}

/// The corp's knowledge base.
pub struct Knowledge {
    groups: Vec<Group>,
    intents: Vec<Intent>,
    serial: u64,
}

impl Default for Knowledge {
    fn default() -> Self {
        Knowledge {
            groups: vec![Group {
                serial: 1,
                id: "SIMKBG000001".into(),
                name: DEFAULT_GROUP.into(),
                is_default: true,
            }],
            intents: Vec::new(),
            serial: 1,
        }
    }
}

impl Knowledge {
    fn next(&mut self) -> u64 {
        self.serial = self.serial.saturating_add(1);
        self.serial
    }

    fn group(&self, id: &str) -> Result<&Group, Refusal> {
        self.groups
            .iter()
            .find(|g| g.id == id)
            .ok_or_else(|| body::invalid("`group_id` names no group"))
    }

    fn intent_mut(&mut self, id: &str) -> Result<&mut Intent, Refusal> {
        self.intents
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| body::invalid("`intent_id` names no intent"))
    }
}

/// A string of 1 to `max` characters at `key`.
fn characters(value: &str, key: &str, max: usize) -> Result<(), Refusal> {
    let count = value.chars().count();
    if count == 0 || count > max {
        return Err(body::invalid(format_args!(
            "`{key}` must be 1 to {max} characters"
        )));
    }
    Ok(())
}

/// `{"text": {"content": …}}` at `key` of `body`, its content 1 to `max` characters.
fn text_content(body: &Value, key: &str, max: usize) -> Result<String, Refusal> {
    let content = body
        .get(key)
        .and_then(|v| v.get("text"))
        .and_then(|v| v.get("content"))
        .and_then(Value::as_str)
        .ok_or_else(|| body::invalid(format_args!("missing `{key}.text.content`")))?;
    characters(content, &format!("{key}.text.content"), max)?;
    Ok(content.to_owned())
}

fn similar_questions(body: &Value) -> Result<Option<Vec<String>>, Refusal> {
    let Some(similar) = body.get("similar_questions").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let items = match similar.get("items") {
        None | Some(Value::Null) => return Ok(Some(Vec::new())),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(body::invalid("`similar_questions.items` must be a list")),
    };
    if items.len() > MAX_SIMILAR {
        return Err(body::invalid(format_args!(
            "at most {MAX_SIMILAR} similar questions"
        )));
    }
    let key = "similar_questions.items";
    items
        .iter()
        .map(|item| text_content(&json!({ key: item }), key, QUESTION_CHARS))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn cursor_of(serial: u64) -> String {
    format!("SIMKB{serial:x}")
}

/// The cursor and limit of a list request: the serial to list after, and how many.
fn page_request(body: &Value) -> Result<(u64, usize), Refusal> {
    let after = match body::string(body, "cursor")?.filter(|c| !c.is_empty()) {
        None => 0,
        Some(cursor) => cursor
            .strip_prefix("SIMKB")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| body::invalid("`cursor` is not one this API handed out"))?,
    };
    let limit = match body::number(body, "limit")? {
        None => MAX_PAGE,
        Some(n @ 1..=MAX_PAGE) => n,
        Some(_) => return Err(body::invalid("`limit` must be 1 to 1000")),
    };
    // At most 1000.
    Ok((after, limit as usize))
}

/// One page of `items` after the serial `after`: the page, `next_cursor`, `has_more`.
fn page<'a, T>(
    items: impl Iterator<Item = &'a T>,
    serial: impl Fn(&T) -> u64,
    (after, limit): (u64, usize),
) -> (Vec<&'a T>, String, u32)
where
    T: 'a,
{
    let mut rest = items.filter(|item| serial(item) > after);
    let listed: Vec<&T> = rest.by_ref().take(limit).collect();
    let has_more = u32::from(rest.next().is_some());
    let last = listed.last().map_or(after, |item| serial(item));
    (listed, cursor_of(last), has_more)
}

impl World {
    /// `kf/knowledge/<endpoint>`, or `None` when there is none.
    pub(super) fn knowledge(
        &mut self,
        endpoint: &str,
        request: &Value,
    ) -> Option<Result<Value, Refusal>> {
        Some(match endpoint {
            "add_group" => self.add_group(request),
            "mod_group" => self.mod_group(request),
            "del_group" => self.del_group(request),
            "list_group" => self.list_group(request),
            "add_intent" => self.add_intent(request),
            "mod_intent" => self.mod_intent(request),
            "del_intent" => self.del_intent(request),
            "list_intent" => self.list_intent(request),
            _ => return None,
        })
    }

    fn group_name(&self, request: &Value, except: Option<&str>) -> Result<String, Refusal> {
        let name = body::required(request, "name")?;
        characters(name, "name", NAME_CHARS)?;
        let taken = self
            .knowledge
            .groups
            .iter()
            .any(|g| g.name == name && Some(g.id.as_str()) != except);
        if taken {
            return Err(body::invalid("a group of that `name` exists"));
        }
        Ok(name.to_owned())
    }

    fn add_group(&mut self, request: &Value) -> Result<Value, Refusal> {
        let name = self.group_name(request, None)?;
        if self.knowledge.groups.len() >= MAX_GROUPS {
            return Err(body::invalid(format_args!(
                "the simulator holds at most {MAX_GROUPS} groups"
            )));
        }
        let serial = self.knowledge.next();
        let id = format!("SIMKBG{serial:06}");
        self.knowledge.groups.push(Group {
            serial,
            id: id.clone(),
            name,
            is_default: false,
        });
        Ok(json!({"group_id": id}))
    }

    fn mod_group(&mut self, request: &Value) -> Result<Value, Refusal> {
        let id = body::required(request, "group_id")?;
        self.knowledge.group(id)?;
        let name = self.group_name(request, Some(id))?;
        if let Some(group) = self.knowledge.groups.iter_mut().find(|g| g.id == id) {
            group.name = name;
        }
        Ok(json!({}))
    }

    fn del_group(&mut self, request: &Value) -> Result<Value, Refusal> {
        let id = body::required(request, "group_id")?;
        if self.knowledge.group(id)?.is_default {
            return Err(body::invalid("the default group can't be deleted"));
        }
        self.knowledge.groups.retain(|g| g.id != id);
        self.knowledge.intents.retain(|i| i.group_id != id);
        Ok(json!({}))
    }

    fn list_group(&mut self, request: &Value) -> Result<Value, Refusal> {
        let paging = page_request(request)?;
        let only = body::string(request, "group_id")?.filter(|id| !id.is_empty());
        if let Some(id) = only {
            self.knowledge.group(id)?;
        }
        let groups = self
            .knowledge
            .groups
            .iter()
            .filter(|g| only.is_none_or(|id| g.id == id));
        let (listed, next_cursor, has_more) = page(groups, |g| g.serial, paging);
        let list: Vec<Value> = listed
            .iter()
            .map(|g| json!({"group_id": g.id, "name": g.name, "is_default": u32::from(g.is_default)}))
            .collect();
        Ok(json!({"next_cursor": next_cursor, "has_more": has_more, "group_list": list}))
    }

    /// The answer's text and its attachments, as listed.
    fn answer(&self, request: &Value) -> Result<(String, Vec<Value>), Refusal> {
        let answers = match request.get("answers") {
            Some(Value::Array(answers)) => answers,
            _ => return Err(body::invalid("missing `answers`")),
        };
        let [answer] = answers.as_slice() else {
            return Err(body::invalid("`answers` holds exactly one answer"));
        };
        let text = text_content(&json!({"answer": answer}), "answer", ANSWER_CHARS)?;
        let attachments: &[Value] = match answer.get("attachments") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(attachments)) => attachments,
            Some(_) => return Err(body::invalid("`attachments` must be a list")),
        };
        if attachments.len() > MAX_ATTACHMENTS {
            return Err(body::invalid(format_args!(
                "at most {MAX_ATTACHMENTS} attachments"
            )));
        }
        let listed = attachments
            .iter()
            .map(|a| self.attachment(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((text, listed))
    }

    /// Checks one attachment and returns it as `list_intent` shows it.
    fn attachment(&self, attachment: &Value) -> Result<Value, Refusal> {
        let msgtype = body::required(attachment, "msgtype")?;
        let payload = attachment
            .get(msgtype)
            .filter(|p| p.is_object())
            .ok_or_else(|| body::invalid(format_args!("missing `{msgtype}` object")))?;
        let held = |key: &str| -> Result<String, Refusal> {
            let media_id = body::required(payload, key)?;
            self.media_file(Some(media_id))
                .map(|file| file.file_name)
                .map_err(|_| Refusal::new(40007, "invalid media_id"))
        };
        let shown = match msgtype {
            "image" | "video" => json!({"name": held("media_id")?}),
            "link" => {
                let title = body::required(payload, "title")?;
                let url = body::required(payload, "url")?;
                body::at_most(url, "url", 2048)?;
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(body::invalid("`url` must start with http:// or https://"));
                }
                let mut link = json!({"title": title, "url": url});
                for key in ["desc", "picurl"] {
                    if let Some(value) = body::string(payload, key)? {
                        link[key] = json!(value);
                    }
                }
                link
            }
            "miniprogram" => {
                held("thumb_media_id")?;
                json!({
                    "title": body::required(payload, "title")?,
                    "appid": body::required(payload, "appid")?,
                    "pagepath": body::required(payload, "pagepath")?,
                })
            }
            _ => {
                return Err(body::invalid(format_args!(
                    "an attachment is an image, video, link or miniprogram, not `{msgtype}`"
                )));
            }
        };
        Ok(json!({"msgtype": msgtype, msgtype: shown}))
    }

    fn add_intent(&mut self, request: &Value) -> Result<Value, Refusal> {
        let group_id = body::required(request, "group_id")?.to_owned();
        self.knowledge.group(&group_id)?;
        let question = text_content(request, "question", QUESTION_CHARS)?;
        let similar = similar_questions(request)?.unwrap_or_default();
        let (answer, attachments) = self.answer(request)?;
        if self.knowledge.intents.len() >= MAX_INTENTS {
            return Err(body::invalid(format_args!(
                "the simulator holds at most {MAX_INTENTS} intents"
            )));
        }
        let serial = self.knowledge.next();
        let id = format!("SIMKBI{serial:06}");
        self.knowledge.intents.push(Intent {
            serial,
            id: id.clone(),
            group_id,
            question,
            similar,
            answer,
            attachments,
        });
        Ok(json!({"intent_id": id}))
    }

    /// Only what the request gives changes.
    fn mod_intent(&mut self, request: &Value) -> Result<Value, Refusal> {
        let id = body::required(request, "intent_id")?;
        self.knowledge.intent_mut(id)?;
        let question = match request.get("question").filter(|q| !q.is_null()) {
            Some(_) => Some(text_content(request, "question", QUESTION_CHARS)?),
            None => None,
        };
        let similar = similar_questions(request)?;
        let answer = match request.get("answers").filter(|a| !a.is_null()) {
            Some(_) => Some(self.answer(request)?),
            None => None,
        };
        let intent = self.knowledge.intent_mut(id)?;
        if let Some(question) = question {
            intent.question = question;
        }
        if let Some(similar) = similar {
            intent.similar = similar;
        }
        if let Some((text, attachments)) = answer {
            intent.answer = text;
            intent.attachments = attachments;
        }
        Ok(json!({}))
    }

    fn del_intent(&mut self, request: &Value) -> Result<Value, Refusal> {
        let id = body::required(request, "intent_id")?;
        self.knowledge.intent_mut(id)?;
        self.knowledge.intents.retain(|i| i.id != id);
        Ok(json!({}))
    }

    fn list_intent(&mut self, request: &Value) -> Result<Value, Refusal> {
        let paging = page_request(request)?;
        let group = body::string(request, "group_id")?.filter(|id| !id.is_empty());
        if let Some(id) = group {
            self.knowledge.group(id)?;
        }
        let intent = body::string(request, "intent_id")?.filter(|id| !id.is_empty());
        if let Some(id) = intent {
            self.knowledge.intent_mut(id)?;
        }
        let intents = self.knowledge.intents.iter().filter(|i| {
            group.is_none_or(|id| i.group_id == id) && intent.is_none_or(|id| i.id == id)
        });
        let (listed, next_cursor, has_more) = page(intents, |i| i.serial, paging);
        let text = |content: &str| json!({"text": {"content": content}});
        let list: Vec<Value> = listed
            .iter()
            .map(|i| {
                let similar: Vec<Value> = i.similar.iter().map(|q| text(q)).collect();
                json!({
                    "group_id": i.group_id, "intent_id": i.id,
                    "question": text(&i.question),
                    "similar_questions": {"items": similar},
                    "answers": [{"text": {"content": i.answer}, "attachments": i.attachments}],
                })
            })
            .collect();
        Ok(json!({"next_cursor": next_cursor, "has_more": has_more, "intent_list": list}))
    }
}
