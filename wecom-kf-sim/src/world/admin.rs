//! The management endpoints (docs 94661-94665, 94645-94647, 94669, 95159, 94674, 95153): accounts, servicers, session states,
//! customers and the upgrade service. They act on the same accounts and sessions as the
//! message endpoints, so a session moved to a servicer here refuses `send_msg` with 95018,
//! and a `msg_code` handed out here works with `send_msg_on_event`.

use serde_json::{Value, json};

use super::stats::Traffic;
use super::{
    Account, Answer, CodeKind, Customer, ServicerAvailability, Session, World, avatar_url, ok,
    refused,
};
use crate::body::{self, Refusal, SessionRef, UpgradeOffer};

/// The endpoints WeCom serves with GET and query parameters; the others take a JSON body.
pub const GET_ENDPOINTS: &[&str] = &[
    "servicer/list",
    "get_corp_qualification",
    "customer/get_upgrade_service_config",
];

/// A corp holds at most 5000 accounts (94662).
const MAX_ACCOUNTS: usize = 5000;

/// Where contact links point; the account's id and the encoded scene follow.
const CONTACT_URL: &str = "https://work.weixin.qq.com/kf/";

fn no_account() -> Refusal {
    Refusal::new(95004, "open_kfid not exist")
}

fn unknown_customer() -> Refusal {
    Refusal::new(40096, "invalid external userid")
}

/// The changes `service_state/trans` may make (94669): the queue and the smart assistant
/// hand over to a servicer, a servicer hands over to another, and any live session may
/// end. Nothing goes back to 0, and an ended session only reopens when the customer writes.
fn transition_allowed(from: u8, to: u8) -> bool {
    match from {
        0 => (1..=4).contains(&to),
        1 => (2..=4).contains(&to),
        2 | 3 => matches!(to, 3 | 4),
        _ => false,
    }
}

impl ServicerAvailability {
    /// `servicer/list`'s encoding: `status` 0 receiving / 1 stopped, then `stop_type`.
    fn listed(self) -> (u32, u32) {
        match self {
            ServicerAvailability::Receiving => (0, 0),
            ServicerAvailability::Stopped => (1, 0),
            ServicerAvailability::Suspended => (1, 1),
        }
    }
}

impl World {
    /// The management endpoint at `kf/<endpoint>`, or `None` when there is none.
    pub fn manage(&mut self, endpoint: &str, request: &Value) -> Option<Answer> {
        let result = match endpoint {
            "account/add" => self.account_add(request),
            "account/del" => self.account_del(request),
            "account/update" => self.account_update(request),
            "account/list" => self.account_list(request),
            "add_contact_way" => self.add_contact_way(request),
            "servicer/add" => self.servicer_add(request),
            "servicer/del" => self.servicer_del(request),
            "servicer/list" => self.servicer_list(request),
            "service_state/get" => self.service_state_get(request),
            "service_state/trans" => self.service_state_trans(request),
            "customer/batchget" => self.customer_batchget(request),
            "get_corp_qualification" => {
                Ok(json!({"wechat_channels_binding": self.wechat_channels_binding}))
            }
            "customer/get_upgrade_service_config" => Ok(self.upgrade_service_config()),
            "customer/upgrade_service" => self.upgrade_service(request),
            "customer/cancel_upgrade_service" => self.cancel_upgrade_service(request),
            "get_corp_statistic" => self.get_corp_statistic(request),
            "get_servicer_statistic" => self.get_servicer_statistic(request),
            _ => match endpoint.strip_prefix("knowledge/") {
                Some(endpoint) => self.knowledge(endpoint, request)?,
                None => return None,
            },
        };
        Some(match result {
            Ok(fields) => ok(fields),
            Err(refusal) => refused(refusal),
        })
    }

    // -- accounts --------------------------------------------------------------------

    fn account_add(&mut self, request: &Value) -> Result<Value, Refusal> {
        let new = body::account_add(request)?;
        if self.accounts.len() >= MAX_ACCOUNTS {
            return Err(Refusal::new(95005, "account count exceeds limit"));
        }
        self.accounts_created += 1;
        let open_kfid = self.next_id("wkSIMKF");
        let account = Account::new(self.accounts_created, new.name, avatar_url(&new.media_id));
        self.accounts.insert(open_kfid.clone(), account);
        Ok(json!({"open_kfid": open_kfid}))
    }

    /// Deleting an account drops its log, sessions and unused event codes with it.
    fn account_del(&mut self, request: &Value) -> Result<Value, Refusal> {
        let open_kfid = body::open_kfid(request)?;
        self.accounts.remove(&open_kfid).ok_or_else(no_account)?;
        self.codes.retain(|_, code| code.open_kfid != open_kfid);
        Ok(json!({}))
    }

    fn account_update(&mut self, request: &Value) -> Result<Value, Refusal> {
        let change = body::account_update(request)?;
        let account = self.account(&change.open_kfid)?;
        if let Some(name) = change.name {
            account.name = name;
        }
        if let Some(media_id) = change.media_id {
            account.avatar = avatar_url(&media_id);
        }
        Ok(json!({}))
    }

    /// Accounts in the order they were created; this app manages every one of them.
    fn account_list(&mut self, request: &Value) -> Result<Value, Refusal> {
        let page = body::account_list(request)?;
        let mut accounts: Vec<(&String, &Account)> = self.accounts.iter().collect();
        accounts.sort_by_key(|(_, account)| account.serial);
        let list: Vec<Value> = accounts
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .map(|(open_kfid, account)| {
                json!({
                    "open_kfid": open_kfid, "name": account.name,
                    "avatar": account.avatar, "manage_privilege": true,
                })
            })
            .collect();
        Ok(json!({"account_list": list}))
    }

    /// The link carries the scene (as `enc_scene=ENC<scene>`) for
    /// [`customer_opens_link`](Self::customer_opens_link) to read back.
    fn add_contact_way(&mut self, request: &Value) -> Result<Value, Refusal> {
        let way = body::add_contact_way(request)?;
        let account = self.account(&way.open_kfid)?;
        let mut url = format!("{CONTACT_URL}{}", account.contact_id);
        if let Some(scene) = &way.scene {
            url.push_str("?enc_scene=ENC");
            url.push_str(scene);
        }
        Ok(json!({"url": url}))
    }

    /// A customer opens a contact link, with the `scene_param` the developer may have
    /// appended: the `enter_session` event carries both. Returns the account, the
    /// `welcome_code` if any and the callback token.
    pub fn customer_opens_link(
        &mut self,
        url: &str,
        external_userid: &str,
    ) -> Result<(String, Option<String>, String), Refusal> {
        let bad_link = || Refusal::new(40058, "invalid parameter: not a contact link");
        let link = reqwest::Url::parse(url).map_err(|_| bad_link())?;
        let contact_id = link
            .as_str()
            .strip_prefix(CONTACT_URL)
            .map(|rest| rest.split(['?', '#']).next().unwrap_or_default())
            .ok_or_else(bad_link)?;
        let open_kfid = self
            .accounts
            .iter()
            .find(|(_, account)| account.contact_id == contact_id)
            .map(|(open_kfid, _)| open_kfid.clone())
            .ok_or_else(no_account)?;
        let (mut scene, mut scene_param) = (String::new(), String::new());
        for (key, value) in link.query_pairs() {
            match &*key {
                "enc_scene" => scene = value.strip_prefix("ENC").unwrap_or(&value).to_owned(),
                "scene_param" => scene_param = value.into_owned(),
                _ => {}
            }
        }
        if scene_param.len() > 128 {
            return Err(Refusal::new(
                40058,
                "invalid parameter: `scene_param` over 128 bytes",
            ));
        }
        let (code, token) =
            self.customer_enters(&open_kfid, external_userid, &scene, &scene_param)?;
        Ok((open_kfid, code, token))
    }

    // -- servicers -------------------------------------------------------------------

    /// One result row per member and department: members outside the corp get 60111,
    /// ones already serving are `ignored`.
    fn servicer_add(&mut self, request: &Value) -> Result<Value, Refusal> {
        let change = body::servicer_change(request)?;
        let account = self
            .accounts
            .get_mut(&change.open_kfid)
            .ok_or_else(no_account)?;
        let mut results = Vec::new();
        for userid in change.userids {
            let (errcode, errmsg) = if !self.members.contains(&userid) {
                (60111, "userid not found")
            } else if account.servicers.iter().any(|(s, _)| *s == userid) {
                (0, "ignored")
            } else {
                account
                    .servicers
                    .push((userid.clone(), ServicerAvailability::Receiving));
                (0, "success")
            };
            results.push(json!({"userid": userid, "errcode": errcode, "errmsg": errmsg}));
        }
        for department_id in change.department_ids {
            let errmsg = if account.departments.contains(&department_id) {
                "ignored"
            } else {
                account.departments.push(department_id);
                "success"
            };
            results.push(json!({"department_id": department_id, "errcode": 0, "errmsg": errmsg}));
        }
        Ok(json!({"result_list": results}))
    }

    /// Removing someone who isn't a servicer is `ignored`, not an error.
    fn servicer_del(&mut self, request: &Value) -> Result<Value, Refusal> {
        let change = body::servicer_change(request)?;
        let account = self.account(&change.open_kfid)?;
        let mut results = Vec::new();
        for userid in change.userids {
            let before = account.servicers.len();
            account.servicers.retain(|(s, _)| *s != userid);
            let errmsg = if account.servicers.len() < before {
                "success"
            } else {
                "ignored"
            };
            results.push(json!({"userid": userid, "errcode": 0, "errmsg": errmsg}));
        }
        for department_id in change.department_ids {
            let before = account.departments.len();
            account.departments.retain(|d| *d != department_id);
            let errmsg = if account.departments.len() < before {
                "success"
            } else {
                "ignored"
            };
            results.push(json!({"department_id": department_id, "errcode": 0, "errmsg": errmsg}));
        }
        Ok(json!({"result_list": results}))
    }

    fn servicer_list(&mut self, request: &Value) -> Result<Value, Refusal> {
        let open_kfid = body::open_kfid(request)?;
        let account = self.account(&open_kfid)?;
        let members = account.servicers.iter().map(|(userid, status)| {
            let (status, stop_type) = status.listed();
            json!({"userid": userid, "status": status, "stop_type": stop_type})
        });
        let departments = account
            .departments
            .iter()
            .map(|department_id| json!({"department_id": department_id}));
        let list: Vec<Value> = members.chain(departments).collect();
        Ok(json!({"servicer_list": list}))
    }

    /// A servicer starts or stops receiving in the WeCom app: `servicer/list` shows it and
    /// the account's log gets a `servicer_status_change` event (1 receiving, 2 stopped).
    pub fn servicer_becomes(
        &mut self,
        open_kfid: &str,
        servicer_userid: &str,
        availability: ServicerAvailability,
    ) -> Result<(), Refusal> {
        let account = self.account(open_kfid)?;
        let Some((_, current)) = account
            .servicers
            .iter_mut()
            .find(|(s, _)| s == servicer_userid)
        else {
            return Err(Refusal::new(95014, "user is not a servicer"));
        };
        *current = availability;
        let mut event = json!({
            "event_type": "servicer_status_change", "open_kfid": open_kfid,
            "servicer_userid": servicer_userid,
        });
        match availability {
            ServicerAvailability::Receiving => event["status"] = json!(1),
            ServicerAvailability::Stopped | ServicerAvailability::Suspended => {
                event["status"] = json!(2);
                event["stop_type"] = json!(availability.listed().1);
            }
        }
        let msgid = self.next_id("SIMEVT");
        let now = self.now().as_secs();
        let item = json!({"msgid": msgid, "send_time": now, "origin": 4, "msgtype": "event", "event": event});
        self.log(open_kfid, item).map(drop)
    }

    // -- session states --------------------------------------------------------------

    /// The account must exist (95004) and the customer must have a session with it (40096).
    fn session(&mut self, at: &SessionRef) -> Result<&mut Session, Refusal> {
        self.account(&at.open_kfid)?
            .sessions
            .get_mut(&at.external_userid)
            .ok_or_else(unknown_customer)
    }

    fn service_state_get(&mut self, request: &Value) -> Result<Value, Refusal> {
        let at = body::session_ref(request)?;
        let session = self.session(&at)?;
        let mut fields = json!({"service_state": session.state});
        if let (3, Some(servicer)) = (session.state, &session.servicer) {
            fields["servicer_userid"] = json!(servicer);
        }
        Ok(fields)
    }

    /// Checks the transition and the servicer, then hands out a `msg_code` the first time
    /// a conversation is queued or served, and whenever it ends.
    fn service_state_trans(&mut self, request: &Value) -> Result<Value, Refusal> {
        let change = body::state_change(request)?;
        let account = self.account(&change.session.open_kfid)?;
        let availability = change.servicer_userid.as_ref().and_then(|userid| {
            account
                .servicers
                .iter()
                .find(|(s, _)| s == userid)
                .map(|(_, availability)| *availability)
        });
        let session = account
            .sessions
            .get_mut(&change.session.external_userid)
            .ok_or_else(unknown_customer)?;
        if session.state == 4 {
            return Err(Refusal::new(95013, "session already ended"));
        }
        if !transition_allowed(session.state, change.state) {
            return Err(Refusal::new(95016, "service state transition not allowed"));
        }
        if change.state == 3 {
            match availability {
                None => return Err(Refusal::new(95014, "user is not a servicer")),
                Some(ServicerAvailability::Receiving) => {}
                Some(_) => return Err(Refusal::new(95019, "servicer is not receiving")),
            }
        }
        let kind = match change.state {
            2 if !session.queue_code_given => {
                session.queue_code_given = true;
                Some(CodeKind::Queue)
            }
            3 if !session.pickup_code_given => {
                session.pickup_code_given = true;
                Some(CodeKind::Pickup)
            }
            4 => Some(CodeKind::End),
            _ => None,
        };
        let (from, conversation) = (session.state, session.conversation);
        session.state = change.state;
        session.servicer = if change.state == 3 {
            change.servicer_userid.clone()
        } else {
            None
        };
        let at = change.session;
        let servicer = change
            .servicer_userid
            .as_deref()
            .filter(|_| change.state == 3);
        let states = (from, change.state);
        self.record_state(
            &at.open_kfid,
            &at.external_userid,
            conversation,
            states,
            servicer,
        );
        Ok(match kind {
            Some(kind) => {
                let code = self.issue_code(&at.open_kfid, &at.external_userid, kind);
                json!({"msg_code": code})
            }
            None => json!({}),
        })
    }

    // -- customers -------------------------------------------------------------------

    /// Customers who wrote to any account are known; other ids come back as invalid.
    fn customer_batchget(&mut self, request: &Value) -> Result<Value, Refusal> {
        let query = body::customer_batchget(request)?;
        let mut found = Vec::new();
        let mut invalid = Vec::new();
        for external_userid in query.external_userids {
            let Some(customer) = self.customers.get(&external_userid).filter(|c| c.wrote) else {
                invalid.push(external_userid);
                continue;
            };
            let mut profile = json!({
                "external_userid": external_userid, "nickname": customer.nickname,
                "avatar": format!("https://wx.qlogo.cn/mmhead/{external_userid}/0"),
                "gender": customer.gender,
            });
            if let (true, Some((scene, scene_param))) = (query.with_context, &customer.entered) {
                profile["enter_session_context"] =
                    json!({"scene": scene, "scene_param": scene_param});
            }
            found.push(profile);
        }
        Ok(json!({"customer_list": found, "invalid_external_userid": invalid}))
    }

    /// Gives a customer the WeChat profile `customer/batchget` reports.
    pub fn set_customer_profile(&mut self, external_userid: &str, nickname: &str, gender: u32) {
        let customer = self
            .customers
            .entry(external_userid.to_owned())
            .or_insert_with(|| Customer::new(external_userid));
        customer.nickname = nickname.to_owned();
        customer.gender = gender;
    }

    // -- the upgrade service ---------------------------------------------------------

    fn upgrade_service_config(&self) -> Value {
        let range = &self.upgrade_service;
        json!({
            "member_range": {
                "userid_list": range.userid_list,
                "department_id_list": range.department_id_list,
            },
            "groupchat_range": {"chat_id_list": range.chat_id_list},
        })
    }

    /// Only members and chats of the configured range may be offered (95021). Members of
    /// the range's departments are not resolved: name them in `userid_list`.
    fn upgrade_service(&mut self, request: &Value) -> Result<Value, Refusal> {
        let upgrade = body::upgrade_service(request)?;
        let range = &self.upgrade_service;
        let in_range = match &upgrade.offer {
            UpgradeOffer::Member { userid, .. } => range.userid_list.contains(userid),
            UpgradeOffer::GroupChat { chat_id, .. } => range.chat_id_list.contains(chat_id),
        };
        let session = self.session(&upgrade.session)?;
        if !in_range {
            return Err(Refusal::new(
                95021,
                "userid or chat_id not in upgrade service range",
            ));
        }
        let servicer = session.servicer.clone().filter(|_| session.state == 3);
        let conversation = session.conversation;
        let member = matches!(upgrade.offer, UpgradeOffer::Member { .. });
        session.upgrade = Some(upgrade.offer);
        let at = upgrade.session;
        let offered = Traffic::Upgrade { servicer, member };
        self.record(&at.open_kfid, &at.external_userid, conversation, offered);
        Ok(json!({}))
    }

    fn cancel_upgrade_service(&mut self, request: &Value) -> Result<Value, Refusal> {
        let at = body::session_ref(request)?;
        self.session(&at)?.upgrade = None;
        Ok(json!({}))
    }

    /// The offer `upgrade_service` made to a customer and nobody cancelled.
    pub fn upgrade_offer(&self, open_kfid: &str, external_userid: &str) -> Option<UpgradeOffer> {
        self.accounts
            .get(open_kfid)?
            .sessions
            .get(external_userid)?
            .upgrade
            .clone()
    }
}
