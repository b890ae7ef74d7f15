//! The bot runtime under fire: three replicas in child processes share one Redis and one
//! callback URL's traffic, 52 customers on two accounts write 20 messages each, and
//! replicas are killed with SIGKILL at random moments (mid-turn, mid-send) and started
//! again. Counted at the simulator: every message answered, by exactly one answer, whole,
//! in order per customer, and no send refused for the budget.
//!
//! `cargo test --all-features --test bot_chaos -- --nocapture` prints the figures;
//! `CHAOS_SEED=<n>` replays a run's random choices.
#![cfg(all(feature = "redis", feature = "callback-server"))]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Rng;
use common::callbacks::{crypto, try_post_callback};
use common::redis_server::RedisServer;
use wecom_kf::bot::{Answer, Bot, BotStore as _};
use wecom_kf::redis::Redis;
use wecom_kf::reply::{Replier, ReplyBudget, Turn};
use wecom_kf::{SyncStream, types::Text};
use wecom_kf_sim::{SimConfig, Simulator};

const ACCOUNTS: [&str; 2] = ["wkCHAOSA", "wkCHAOSB"];
const CUSTOMERS_PER_ACCOUNT: usize = 26;
const MESSAGES_EACH: usize = 20;
const REPLICAS: usize = 3;
const KILLS: usize = 20;
/// How long the customers write (and the kills fall) for.
const WRITING: Duration = Duration::from_secs(20);
/// A replica's claims and sync locks expire this long after it died.
const CLAIM_TTL: Duration = Duration::from_millis(1000);

const CHILD: &str = "WECOM_KF_CHAOS_REPLICA";

fn child_env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"))
}

/// A replica: the bot runtime over Redis, serving the callback URL, until it is killed.
/// Its handler takes 0–250 ms and answers each turn in 1 or 2 parts that name the
/// messages the turn covers: `re <text>,<text> #<part>/<parts>`.
#[test]
#[ignore = "a child process of three_replicas_killed_twenty_times_answer_every_message_once"]
fn chaos_replica() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let redis = Redis::connect(&child_env("REDIS_URL"))
            .await
            .expect("redis")
            .prefix("chaos:");
        let client = wecom_kf::Client::builder()
            .corp_id(child_env("CORP_ID"))
            .secret(child_env("SECRET"))
            .base_url(child_env("SIM_URL"))
            .token_store(redis.token_store())
            .build()
            .expect("client");
        let replier = Replier::new(client.clone()).budget(ReplyBudget::new(redis.budget_store()));
        let sync = SyncStream::new(client, redis.cursor_store())
            .with_lock(redis.sync_lock().ttl(CLAIM_TTL));
        let bot = Bot::with_replier(replier, sync, redis.bot_store(), |turn: Turn| async move {
            let texts: Vec<String> = turn.text().lines().map(str::to_owned).collect();
            // Seeded by the texts (FNV-1a), so a replica that redoes a turn would choose alike.
            let seed = texts
                .iter()
                .flat_map(|t| t.bytes())
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
            let mut rng = Rng(seed | 1);
            tokio::time::sleep(Duration::from_millis(rng.below(250) as u64)).await;
            let parts = 1 + rng.below(2);
            let covered = texts.join(",");
            let messages = (1..=parts)
                .map(|part| Text::new(format!("re {covered} #{part}/{parts}")).into())
                .collect();
            Ok::<_, std::io::Error>(Answer::Messages(messages))
        })
        .claim_ttl(CLAIM_TTL)
        .max_attempts(20, Duration::from_millis(50))
        .skip_history(false);
        let crypto = wecom_kf::callback::CallbackCrypto::new(
            "CALLBACK-TOKEN",
            "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            &child_env("CORP_ID"),
        )
        .expect("callback keys");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let app = bot.router(crypto);
        bot.start().await.expect("start");
        println!("LISTENING {}", listener.local_addr().expect("addr"));
        wecom_kf::callback::server::serve(listener, app)
            .await
            .expect("serve");
    });
}

/// A replica process and where it listens.
struct Replica {
    child: Child,
    addr: SocketAddr,
}

impl Replica {
    fn spawn(sim: &Simulator, redis: &str, log: &Path) -> Self {
        let exe = std::env::current_exe().expect("the test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "chaos_replica",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("REDIS_URL", redis)
            .env("CORP_ID", sim.corp_id())
            .env("SECRET", sim.secret())
            .env("SIM_URL", sim.base_url())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("a log file"))
            .spawn()
            .expect("a replica");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the replica says where it listens")
                .expect("stdout");
            // libtest may print the test's name on the same line first.
            if let Some((_, addr)) = line.split_once("LISTENING ") {
                break addr.trim().parse().expect("an address");
            }
        };
        // The rest of its stdout is drained, so it never blocks writing to it.
        std::thread::spawn(move || for _ in lines {});
        Replica { child, addr }
    }

    fn kill(&mut self) {
        // `Child::kill` is SIGKILL on unix: no destructor, no flush, no release.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One answer the simulator accepted, by the messages it covers.
#[derive(Debug, Default)]
struct Answered {
    parts: Vec<usize>,
    of: usize,
    /// Its place in the simulator's log of sends: answers of one customer must follow
    /// the order of the messages they cover.
    first_sent: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_killed_twenty_times_answer_every_message_once() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    println!("CHAOS_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let redis = RedisServer::start();
    let config = SimConfig {
        open_kfids: ACCOUNTS.map(String::from).to_vec(),
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator");
    let crypto = crypto(&sim);
    let http = reqwest::Client::new();
    let logs: PathBuf = std::env::temp_dir().join(format!("wecom-kf-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("a log directory");
    let mut started = 0usize;
    let spawn = |started: &mut usize| {
        *started += 1;
        Replica::spawn(
            &sim,
            &redis.url(),
            &logs.join(format!("replica-{started}.log")),
        )
    };
    let mut replicas: Vec<Replica> = (0..REPLICAS).map(|_| spawn(&mut started)).collect();

    let customers: Vec<(String, String)> = ACCOUNTS
        .iter()
        .flat_map(|kf| {
            (0..CUSTOMERS_PER_ACCOUNT).map(move |c| (kf.to_string(), format!("wmCHAOS{kf}{c:02}")))
        })
        .collect();
    let total = customers.len() * MESSAGES_EACH;
    let mut kill_at: Vec<Duration> = (0..KILLS)
        .map(|_| WRITING.mul_f64((rng.below(1000) as f64 + 1.0) / 1001.0))
        .collect();
    kill_at.sort();
    let mut kill_at = kill_at.into_iter().peekable();
    let mut kills: Vec<Instant> = Vec::new();
    let mut next = vec![0usize; customers.len()];
    // A message's text → (customer, its index, when it was written).
    let mut written: HashMap<String, (usize, usize, Instant)> = HashMap::new();
    let mut msgids: HashMap<String, String> = HashMap::new();
    let mut answered_at: HashMap<String, Instant> = HashMap::new();
    let mut seen_sends = 0usize;
    let begin = Instant::now();
    let gap = WRITING / total as u32;

    let watch = |answered_at: &mut HashMap<String, Instant>, seen_sends: &mut usize| {
        let sent = sim.sent();
        let now = Instant::now();
        for message in &sent[(*seen_sends).min(sent.len())..] {
            for text in covered(message) {
                answered_at.entry(text).or_insert(now);
            }
        }
        *seen_sends = sent.len();
    };

    while written.len() < total {
        let due = begin + gap * written.len() as u32;
        tokio::time::sleep_until(due.into()).await;
        // One customer who still has something to say writes.
        let open: Vec<usize> = (0..customers.len())
            .filter(|&c| next[c] < MESSAGES_EACH)
            .collect();
        let c = open[rng.below(open.len())];
        let (kf, user) = &customers[c];
        let text = format!("{user}-m{:02}", next[c]);
        let said = sim
            .customer_says(kf, user, &text)
            .expect("the customer writes");
        msgids.insert(said.msgid.clone(), text.clone());
        written.insert(text, (c, next[c], Instant::now()));
        next[c] += 1;
        // WeCom calls the URL; the load balancer picks a replica; a dead one gets the
        // retry elsewhere.
        let first = rng.below(REPLICAS);
        for r in (0..REPLICAS).map(|i| (first + i) % REPLICAS) {
            let status =
                try_post_callback(&http, &crypto, replicas[r].addr, kf, &said.callback_token).await;
            if status == 200 {
                break;
            }
        }
        if kill_at.next_if(|at| begin.elapsed() >= *at).is_some() {
            let victim = rng.below(REPLICAS);
            replicas[victim].kill();
            kills.push(Instant::now());
            replicas[victim] = spawn(&mut started);
        }
        if written.len().is_multiple_of(20) {
            watch(&mut answered_at, &mut seen_sends);
        }
    }
    for at in kill_at {
        let _ = at;
        let victim = rng.below(REPLICAS);
        replicas[victim].kill();
        kills.push(Instant::now());
        replicas[victim] = spawn(&mut started);
    }
    // Done when every message is answered, or when no customer has work left and no
    // send came for a while (the answers the budget held back never come).
    let shared = Redis::connect(&redis.url())
        .await
        .expect("redis")
        .prefix("chaos:")
        .bot_store();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut quiet_since = (Instant::now(), seen_sends);
    while answered_at.len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        watch(&mut answered_at, &mut seen_sends);
        if seen_sends != quiet_since.1 {
            quiet_since = (Instant::now(), seen_sends);
        }
        let idle = quiet_since.0.elapsed() > CLAIM_TTL * 3;
        if idle
            && shared
                .customers_with_work()
                .await
                .is_ok_and(|w| w.is_empty())
        {
            break;
        }
    }
    // Let any last part in flight land before counting.
    tokio::time::sleep(CLAIM_TTL).await;
    drop(replicas);
    watch(&mut answered_at, &mut seen_sends);

    // What the simulator accepted, answer by answer.
    let sent = sim.sent();
    let mut answers: BTreeMap<(String, String), Answered> = BTreeMap::new();
    let mut foreign = 0;
    for (place, message) in sent.iter().enumerate() {
        let Some((covers, part, of)) = parse_answer(message) else {
            foreign += 1;
            continue;
        };
        let answer = answers
            .entry((message.touser.clone(), covers))
            .or_insert_with(|| Answered {
                first_sent: place,
                ..Answered::default()
            });
        answer.parts.push(part);
        answer.of = of;
    }
    let mut answers_per_message: HashMap<&str, usize> = HashMap::new();
    let mut half_answers = 0;
    let mut half_answered: Vec<String> = Vec::new();
    let mut parts_twice = 0;
    for ((_, covers), answer) in &answers {
        for text in covers.split(',') {
            *answers_per_message.entry(text).or_default() += 1;
        }
        let mut parts = answer.parts.clone();
        parts.sort_unstable();
        let before = parts.len();
        parts.dedup();
        parts_twice += before - parts.len();
        if parts != (1..=answer.of).collect::<Vec<_>>() {
            half_answers += 1;
            half_answered.push(covers.clone());
        }
    }
    let unanswered_texts: Vec<String> = written
        .keys()
        .filter(|t| !answers_per_message.contains_key(t.as_str()))
        .cloned()
        .collect();
    let unanswered = unanswered_texts.len();
    let answered_twice = answers_per_message.values().filter(|&&n| n > 1).count();
    // Per customer, in the order the simulator accepted them, answers cover ever later
    // messages.
    let mut by_customer: HashMap<&str, Vec<(usize, usize, usize)>> = HashMap::new();
    for ((user, covers), answer) in &answers {
        let indexes: Vec<usize> = covers
            .split(',')
            .filter_map(|t| written.get(t).map(|w| w.1))
            .collect();
        let (Some(&low), Some(&high)) = (indexes.iter().min(), indexes.iter().max()) else {
            continue;
        };
        by_customer
            .entry(user)
            .or_default()
            .push((answer.first_sent, low, high));
    }
    let mut out_of_order = 0;
    for answers in by_customer.values_mut() {
        answers.sort_unstable();
        out_of_order += answers.windows(2).filter(|w| w[1].1 <= w[0].2).count();
    }
    let grouped = answers
        .keys()
        .filter(|(_, covers)| covers.contains(','))
        .count();

    // How long messages waited for the first part of their answer, and the longest wait
    // of a message that was waiting when a replica was killed.
    let mut waits: Vec<Duration> = Vec::new();
    let mut longest_across_a_kill = Duration::ZERO;
    for (text, (_, _, at)) in &written {
        let Some(done) = answered_at.get(text) else {
            continue;
        };
        let wait = done.saturating_duration_since(*at);
        waits.push(wait);
        if kills.iter().any(|k| k >= at && k <= done) {
            longest_across_a_kill = longest_across_a_kill.max(wait);
        }
    }
    waits.sort_unstable();
    let percentile = |p: f64| {
        waits
            .get(((waits.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };

    // What the replicas' logs say: resends of parts in flight at a kill (refused by the
    // simulator as duplicates), and any send refused for the reply budget.
    let (mut resent, mut budget_refused) = (0, 0);
    // The messages of turns whose rest the reply budget held back (a policy, not a loss:
    // WeCom would have refused them with 95001).
    let mut cut: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&logs).expect("logs") {
        let log = std::fs::read_to_string(entry.expect("a log").path()).unwrap_or_default();
        resent += log.matches("a resent part was already there").count();
        // WeCom's refusals, not the budget's own ("WeCom would refuse with 95001").
        budget_refused += log
            .lines()
            .filter(|l| l.contains("WeCom refused the request: errcode"))
            .filter(|l| l.contains("95001") || l.contains("95002"))
            .count();
        for line in log
            .lines()
            .filter(|l| l.contains("the rest of a reply can't be sent"))
        {
            let covers = line
                .split("covers=")
                .nth(1)
                .and_then(|c| c.split_whitespace().next());
            for msgid in covers.unwrap_or_default().split(',') {
                if let Some(text) = msgids.get(msgid) {
                    cut.push(text.clone());
                }
            }
        }
    }
    let unanswered_not_cut = unanswered_texts.iter().filter(|t| !cut.contains(t)).count();
    let half_not_cut = half_answered
        .iter()
        .filter(|covers| !covers.split(',').any(|t| cut.iter().any(|c| c == t)))
        .count();

    println!(
        "bot chaos: {} customers × {MESSAGES_EACH} messages over {} accounts, {REPLICAS} replicas, \
         {} SIGKILLs ({started} processes started)\n\
         answers: {} ({grouped} covering a burst of messages), sends accepted: {}\n\
         unanswered: {unanswered}, answered more than once: {answered_twice}, half answers: \
         {half_answers}, parts delivered twice: {parts_twice}, out of order: {out_of_order}\n\
         held back by the reply budget: {} messages' answers ({half_not_cut} half answers and \
         {unanswered_not_cut} unanswered messages not explained by it)\n\
         resends of a part in flight at a kill (refused as a duplicate msgid): {resent}\n\
         95001/95002 refusals: {budget_refused}, sends that are no answer: {foreign}\n\
         wait for the first part: p50 {:?}, p99 {:?}, longest {:?}; longest across a kill {:?} \
         (claim TTL {CLAIM_TTL:?})",
        customers.len(),
        ACCOUNTS.len(),
        kills.len(),
        answers.len(),
        sent.len(),
        cut.len(),
        percentile(0.5),
        percentile(0.99),
        percentile(1.0),
        longest_across_a_kill,
    );
    assert_eq!(kills.len(), KILLS);
    assert_eq!(
        unanswered_not_cut, 0,
        "every message is answered (but what the budget held back)"
    );
    assert_eq!(answered_twice, 0, "no message gets two answers");
    assert_eq!(
        half_not_cut, 0,
        "every answer arrives whole (but what the budget held back)"
    );
    assert_eq!(parts_twice, 0, "no part is delivered twice");
    assert_eq!(out_of_order, 0, "each customer's answers come in order");
    assert_eq!(budget_refused, 0, "the budget held");
    assert_eq!(foreign, 0, "every send is a part of an answer");
    let _ = std::fs::remove_dir_all(&logs);
}

/// The message texts an accepted send answers.
fn covered(message: &wecom_kf_sim::SentMessage) -> Vec<String> {
    parse_answer(message)
        .map(|(covers, _, _)| covers.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `re <covers> #<part>/<of>` → its parts.
fn parse_answer(message: &wecom_kf_sim::SentMessage) -> Option<(String, usize, usize)> {
    let text = message.payload.get("content")?.as_str()?;
    let (covers, numbers) = text.strip_prefix("re ")?.rsplit_once(" #")?;
    let (part, of) = numbers.split_once('/')?;
    Some((covers.to_owned(), part.parse().ok()?, of.parse().ok()?))
}
