//! Telling customer input from everything else in a page, and grouping what one customer
//! wrote in a row into one question.

use crate::{Event, Origin, Received, ReceivedMsg};

use super::Customer;

impl ReceivedMsg {
    /// Whether the customer wrote this (`origin` 3): a bot answers these, not servicers'
    /// messages (5), system messages (4) or events.
    pub fn is_customer_input(&self) -> bool {
        self.origin == Some(Origin::Customer) && !matches!(self.content, Received::Event(_))
    }

    /// The account and customer the item is about. Events carry them inside `event`,
    /// not beside `msgtype` (real captures show the outer fields missing), so both places
    /// are read; `None` for events of no customer (`servicer_status_change`).
    pub fn customer(&self) -> Option<Customer> {
        let (open_kfid, external_userid) = match &self.content {
            Received::Event(event) => event_customer(event)?,
            _ => (self.open_kfid.as_ref(), self.external_userid.as_ref()),
        };
        let open_kfid = open_kfid.or(self.open_kfid.as_ref())?;
        let external_userid = external_userid.or(self.external_userid.as_ref())?;
        Some(Customer::new(open_kfid.clone(), external_userid.clone()))
    }
}

fn event_customer(event: &Event) -> Option<(Option<&String>, Option<&String>)> {
    Some(match event {
        Event::EnterSession(e) => (e.open_kfid.as_ref(), e.external_userid.as_ref()),
        Event::MsgSendFail(e) => (e.open_kfid.as_ref(), e.external_userid.as_ref()),
        Event::SessionStatusChange(e) => (e.open_kfid.as_ref(), e.external_userid.as_ref()),
        Event::UserRecallMsg(e) => (e.open_kfid.as_ref(), e.external_userid.as_ref()),
        Event::ServicerRecallMsg(e) => (e.open_kfid.as_ref(), e.external_userid.as_ref()),
        Event::RejectCustomerMsgSwitchChange(e) => {
            (e.open_kfid.as_ref(), e.external_userid.as_ref())
        }
        Event::ServicerStatusChange(_) | Event::Unknown { .. } => return None,
    })
}

/// What one customer wrote in a row: a bot that answers "hi / are you there? / my order
/// 123" once answers the turn, not each message.
#[derive(Debug, Clone)]
pub struct Turn {
    /// Who wrote.
    pub customer: Customer,
    /// Their messages, oldest first; never empty.
    pub messages: Vec<ReceivedMsg>,
}

impl Turn {
    /// The texts of the turn's text messages, one per line: the question as a whole.
    pub fn text(&self) -> String {
        let texts = self.messages.iter().filter_map(|m| match &m.content {
            Received::Text(text) => Some(text.content.as_str()),
            _ => None,
        });
        texts.collect::<Vec<_>>().join("\n")
    }

    /// The newest message of the turn: the one a reply answers.
    pub fn last(&self) -> Option<&ReceivedMsg> {
        self.messages.last()
    }
}

/// The customer input of `messages`, grouped into turns: consecutive messages of one
/// customer form one turn; anything else (events, servicers' messages, another customer)
/// ends it. Items that aren't customer input are left out.
pub fn turns(messages: impl IntoIterator<Item = ReceivedMsg>) -> Vec<Turn> {
    let mut turns: Vec<Turn> = Vec::new();
    let mut open = false;
    for message in messages {
        let customer = message.customer().filter(|_| message.is_customer_input());
        let Some(customer) = customer else {
            open = false;
            continue;
        };
        match turns.last_mut() {
            Some(turn) if open && turn.customer == customer => turn.messages.push(message),
            _ => {
                turns.push(Turn {
                    customer,
                    messages: vec![message],
                });
                open = true;
            }
        }
    }
    turns
}
