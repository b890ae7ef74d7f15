//! The statistics endpoints (docs 95489 and 95490): counters per day,
//! derived from a journal of the simulated traffic: customers' messages, conversations
//! reaching the smart assistant (state 1) or a servicer (3), hand-overs from the
//! assistant, upgrade-service offers.
//!
//! The simulator's assumptions, where the docs leave room:
//! * Days start at 00:00 in the corp's timezone, taken to be UTC+8 (China Standard
//!   Time). As the doc says, a time inside a day counts as that day's 00:00.
//! * `start_time` and `end_time` are days from 180 days before today up to yesterday,
//!   `start_time` ≤ `end_time`, at most 31 days listed (both ends included); anything
//!   else is 40058. Every day of the range is listed, zeros included.
//! * A conversation (咨询会话) counts on the day of its customer's first message, once the
//!   smart assistant or a servicer took it; `ai_transfer_rate` is the share of the day's
//!   assistant conversations later handed to the queue or a servicer, from 0 to 1.
//! * An upgrade-service offer counts as accepted: the simulated customer always adds
//!   the member or joins the chat.
//! * Servicers' own replies, satisfaction surveys and "stop receiving this customer"
//!   aren't simulated: `reply_rate`, `first_reply_average_sec`, the satisfaction fields and
//!   `msg_rejected_customer_cnt` are 0; `ai_knowledge_hit_rate` is left out, as WeCom does
//!   when no knowledge-base answer was tried.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::World;
use crate::body::{self, Refusal, StatisticQuery};

const DAY: i64 = 24 * 3600;
/// The corp's timezone: UTC+8, the simulator's assumption.
const UTC_OFFSET: i64 = 8 * 3600;
/// How far back statistics go: 180 days before today.
const DAYS_KEPT: i64 = 180;
/// The most days one query lists.
const MAX_DAYS: i64 = 31;
/// How long the journal keeps a record: past the 180 days, with a day to spare.
const JOURNAL_SPAN: Duration = Duration::from_secs(182 * 24 * 3600);

/// What happened, for the statistics.
#[derive(Debug, Clone)]
pub enum Traffic {
    /// The customer wrote; `servicer` served the session then (state 3).
    CustomerMessage { servicer: Option<String> },
    /// The conversation reached the smart assistant (state 1).
    Assistant,
    /// The assistant handed the conversation to the queue or a servicer.
    Transferred,
    /// A servicer took the conversation (state 3).
    Served { servicer: String },
    /// An upgrade-service offer: of a member (`member`) or a group chat, made while
    /// `servicer` served the session.
    Upgrade {
        servicer: Option<String>,
        member: bool,
    },
}

/// One line of the journal.
#[derive(Debug, Clone)]
pub struct Record {
    /// Unix seconds.
    at: i64,
    open_kfid: String,
    external_userid: String,
    conversation: u64,
    what: Traffic,
}

/// The 00:00 (UTC+8) that starts the day of `t`, or `None` far out of range.
fn day_of(t: i64) -> Option<i64> {
    let local = t.checked_add(UTC_OFFSET)?;
    local
        .div_euclid(DAY)
        .checked_mul(DAY)?
        .checked_sub(UTC_OFFSET)
}

impl World {
    /// Notes `what` for the statistics, dropping what is older than they reach.
    pub(super) fn record(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        conversation: u64,
        what: Traffic,
    ) {
        let now = self.now();
        let oldest = now.saturating_sub(JOURNAL_SPAN).as_secs();
        let stale = self
            .journal
            .iter()
            .take_while(|r| u64::try_from(r.at).is_ok_and(|at| at < oldest))
            .count();
        self.journal.drain(..stale);
        self.journal.push(Record {
            at: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            open_kfid: open_kfid.to_owned(),
            external_userid: external_userid.to_owned(),
            conversation,
            what,
        });
    }

    /// Notes a session's state change from `from` to `to` (with `servicer` for 3).
    pub(super) fn record_state(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        conversation: u64,
        (from, to): (u8, u8),
        servicer: Option<&str>,
    ) {
        let mut note = |what| self.record(open_kfid, external_userid, conversation, what);
        if to == 1 && from != 1 {
            note(Traffic::Assistant);
        }
        if from == 1 && matches!(to, 2 | 3) {
            note(Traffic::Transferred);
        }
        if let (3, Some(servicer)) = (to, servicer) {
            note(Traffic::Served {
                servicer: servicer.to_owned(),
            });
        }
    }

    /// Checks the range and the account, then lists the days from `start_time` to
    /// `end_time`; `count` gives each day's counters from that day's records.
    fn statistic_days(
        &self,
        query: &StatisticQuery,
        count: impl Fn(i64, &[&Record], &Conversations) -> Value,
    ) -> Result<Value, Refusal> {
        if let Some(open_kfid) = &query.open_kfid
            && !self.accounts.contains_key(open_kfid)
        {
            return Err(Refusal::new(95004, "open_kfid not exist"));
        }
        let invalid = |what: &str| Refusal::new(40058, format!("invalid parameter: {what}"));
        let day = |t: u64| {
            i64::try_from(t)
                .ok()
                .and_then(day_of)
                .ok_or_else(|| invalid("a time out of range"))
        };
        let (start, end) = (day(query.start_time)?, day(query.end_time)?);
        let today = day(self.now().as_secs())?;
        if start > end {
            return Err(invalid("`start_time` is after `end_time`"));
        }
        if end >= today {
            return Err(invalid("`end_time` must be yesterday or earlier"));
        }
        if start < today - DAYS_KEPT * DAY {
            return Err(invalid("`start_time` is more than 180 days back"));
        }
        if (end - start) / DAY + 1 > MAX_DAYS {
            return Err(invalid("at most 31 days at a time"));
        }
        let records: Vec<&Record> = self
            .journal
            .iter()
            .filter(|r| query.open_kfid.as_ref().is_none_or(|k| *k == r.open_kfid))
            .collect();
        let conversations = Conversations::of(&records);
        let mut list = Vec::new();
        let mut stat_time = start;
        while stat_time <= end {
            let that_day: Vec<&Record> = records
                .iter()
                .copied()
                .filter(|r| (stat_time..stat_time + DAY).contains(&r.at))
                .collect();
            let statistic = count(stat_time, &that_day, &conversations);
            list.push(json!({"stat_time": stat_time, "statistic": statistic}));
            stat_time += DAY;
        }
        Ok(json!({"statistic_list": list}))
    }

    /// `POST kf/get_corp_statistic {open_kfid?, start_time, end_time}`: the corp's (or
    /// one account's) counters per day.
    pub(super) fn get_corp_statistic(&mut self, request: &Value) -> Result<Value, Refusal> {
        let query = body::statistic_query(request, false)?;
        self.statistic_days(&query, |stat_time, day, conversations| {
            let messages: Vec<&Record> = day
                .iter()
                .copied()
                .filter(|r| matches!(r.what, Traffic::CustomerMessage { .. }))
                .collect();
            let started: HashSet<u64> = messages
                .iter()
                .map(|r| r.conversation)
                .filter(|c| conversations.first_message_on(*c, stat_time))
                .collect();
            let taken = started
                .iter()
                .filter(|c| conversations.assistant.contains(c) || conversations.served.contains(c))
                .count();
            let assistant: Vec<&u64> = started
                .iter()
                .filter(|c| conversations.assistant.contains(c))
                .collect();
            let transferred = assistant
                .iter()
                .filter(|c| conversations.transferred.contains(c))
                .count();
            let rate = if assistant.is_empty() {
                0.0
            } else {
                transferred as f64 / assistant.len() as f64
            };
            let upgraded = customers(
                day.iter()
                    .copied()
                    .filter(|r| matches!(r.what, Traffic::Upgrade { .. })),
            );
            json!({
                "session_cnt": taken,
                "customer_cnt": customers(messages.iter().copied()),
                "customer_msg_cnt": messages.len(),
                "upgrade_service_customer_cnt": upgraded,
                "ai_session_reply_cnt": assistant.len(),
                "ai_transfer_rate": rate,
                "msg_rejected_customer_cnt": 0,
            })
        })
    }

    /// `POST kf/get_servicer_statistic {open_kfid?, servicer_userid?, start_time,
    /// end_time}`: one servicer's counters per day, or all servicers' summed. A
    /// `servicer_userid` that isn't a member of the corp is 60111.
    pub(super) fn get_servicer_statistic(&mut self, request: &Value) -> Result<Value, Refusal> {
        let query = body::statistic_query(request, true)?;
        if let Some(userid) = &query.servicer_userid
            && !self.members.contains(userid)
        {
            return Err(Refusal::new(60111, "userid not found"));
        }
        // Whether a record made while `servicer` served counts for the query.
        let wanted = query.servicer_userid.as_deref();
        let by = |servicer: Option<&str>| {
            servicer.is_some_and(|s| wanted.is_none_or(|wanted| wanted == s))
        };
        self.statistic_days(&query, |_, day, _| {
            let sessions: HashSet<u64> = day
                .iter()
                .filter(|r| matches!(&r.what, Traffic::Served { servicer } if by(Some(servicer))))
                .map(|r| r.conversation)
                .collect();
            let messages: Vec<&Record> = day
                .iter()
                .copied()
                .filter(|r| {
                    matches!(&r.what, Traffic::CustomerMessage { servicer } if by(servicer.as_deref()))
                })
                .collect();
            let upgrades = |member: Option<bool>| -> Vec<&Record> {
                day.iter()
                    .copied()
                    .filter(|r| match &r.what {
                        Traffic::Upgrade { servicer, member: m } => {
                            by(servicer.as_deref()) && member.is_none_or(|wanted| wanted == *m)
                        }
                        _ => false,
                    })
                    .collect()
            };
            let (members, chats) = (upgrades(Some(true)), upgrades(Some(false)));
            json!({
                "session_cnt": sessions.len(),
                "customer_cnt": customers(messages.iter().copied()),
                "customer_msg_cnt": messages.len(),
                "reply_rate": 0.0,
                "first_reply_average_sec": 0.0,
                "satisfaction_investgate_cnt": 0,
                "satisfaction_participation_rate": 0.0,
                "satisfied_rate": 0.0,
                "middling_rate": 0.0,
                "dissatisfied_rate": 0.0,
                "upgrade_service_customer_cnt": customers(upgrades(None).into_iter()),
                "upgrade_service_member_invite_cnt": members.len(),
                "upgrade_service_member_customer_cnt": customers(members.into_iter()),
                "upgrade_service_groupchat_invite_cnt": chats.len(),
                "upgrade_service_groupchat_customer_cnt": customers(chats.into_iter()),
                "msg_rejected_customer_cnt": 0,
            })
        })
    }
}

/// How many different customers `records` name.
fn customers<'a>(records: impl Iterator<Item = &'a Record>) -> usize {
    records
        .map(|r| r.external_userid.as_str())
        .collect::<HashSet<_>>()
        .len()
}

/// What the whole journal says about each conversation.
struct Conversations {
    /// When the customer first wrote in it.
    first_message: HashMap<u64, i64>,
    assistant: HashSet<u64>,
    served: HashSet<u64>,
    transferred: HashSet<u64>,
}

impl Conversations {
    fn of(records: &[&Record]) -> Self {
        let mut all = Conversations {
            first_message: HashMap::new(),
            assistant: HashSet::new(),
            served: HashSet::new(),
            transferred: HashSet::new(),
        };
        for r in records {
            match r.what {
                Traffic::CustomerMessage { .. } => {
                    all.first_message.entry(r.conversation).or_insert(r.at);
                }
                Traffic::Assistant => {
                    all.assistant.insert(r.conversation);
                }
                Traffic::Served { .. } => {
                    all.served.insert(r.conversation);
                }
                Traffic::Transferred => {
                    all.transferred.insert(r.conversation);
                }
                Traffic::Upgrade { .. } => {}
            }
        }
        all
    }

    /// Whether `conversation` began (its customer's first message) on the day starting
    /// at `stat_time`.
    fn first_message_on(&self, conversation: u64, stat_time: i64) -> bool {
        self.first_message
            .get(&conversation)
            .is_some_and(|at| day_of(*at) == Some(stat_time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_midnight_in_utc_plus_8() {
        // 2024-03-01 00:00 +08:00 is 2024-02-29 16:00 UTC.
        let midnight = 1_709_222_400;
        assert_eq!(day_of(midnight), Some(midnight));
        assert_eq!(day_of(midnight + DAY - 1), Some(midnight));
        assert_eq!(day_of(midnight - 1), Some(midnight - DAY));
        assert_eq!(day_of(0), Some(-UTC_OFFSET));
        assert_eq!(day_of(i64::MAX), None);
    }
}
