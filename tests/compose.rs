//! The reply composer from outside: what it promises for any text (a seeded property test
//! over random Unicode and markdown), and packing into the replies that are left.

mod common;

use common::Rng;
use unicode_segmentation::UnicodeSegmentation;
use wecom_kf::reply::{
    Composer, MAX_TEXT_BYTES, OverBudget, ReplyPlan, Shortened, TRUNCATION_MARKER,
};

/// Characters that can start markdown for the composer; text without them is plain.
const MARKDOWN_CHARS: &[char] = &[
    '#', '*', '_', '~', '`', '[', ']', '>', '|', '-', '+', '\\', '<', '\r',
];

const MARKDOWN: &[&str] = &[
    "# ",
    "## ",
    "###### ",
    "\n- ",
    "\n* ",
    "\n+ ",
    "\n1. ",
    "\n  - ",
    "**",
    "*",
    "__",
    "_",
    "~~",
    "`",
    "``",
    "\n```\n",
    "\n```rust\n",
    "\n~~~\n",
    "[链接](https://example.com/a_b)",
    "![图](https://img.cn/x.png)",
    "[t](",
    ")",
    "](",
    "\n> ",
    "\n>> ",
    "\n---\n",
    "***",
    "\n| a | b |\n|---|:-:|\n| 1 | **2** |\n",
    "|",
    "\\",
    "\\*",
    "<https://a.b/c>",
    "http://x.y/_z_",
    "<",
    ">",
    "[",
    "]",
    "!",
    "\n- [ ] ",
    "\n- [x] ",
];

const WORDS: &[&str] = &[
    "the",
    "reply",
    "WeChat",
    "order",
    "42",
    "3.14",
    "e.g.",
    "snake_case",
    "Hello",
    "x",
];
const PUNCTUATION: &[&str] = &[
    "。", "，", "！", "？", "、", "；", "：", "…", "……", ". ", ", ", "! ", "? ", "; ", ".", ",",
    "“", "”", "「", "」", "（", "）", "(", ")", "\"", "'",
];
const SPACES: &[&str] = &[
    " ", "\n", "\n\n", "\t", "\u{3000}", "\u{a0}", "  \n", "\r\n", "\r",
];
const EMOJI: &[&str] = &[
    "👨\u{200d}👩\u{200d}👧\u{200d}👦",
    "👍🏽",
    "🇨🇳",
    "🇺🇸🇯🇵",
    "1\u{fe0f}\u{20e3}",
    "🏳\u{fe0f}\u{200d}🌈",
    "😀",
    "❤\u{fe0f}",
];
const MAX_BYTES: &[usize] = &[16, 17, 19, 24, 32, 48, 64, 100, 257, 512, MAX_TEXT_BYTES];

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items.get(rng.below(items.len())).copied().unwrap_or("")
}

/// Any Unicode scalar value, mostly from the Basic Multilingual Plane.
fn any_char(rng: &mut Rng) -> char {
    loop {
        let range = if rng.below(4) == 0 {
            0x11_0000
        } else {
            0x1_0000
        };
        if let Some(c) = char::from_u32(rng.below(range) as u32) {
            return c;
        }
    }
}

fn cjk(rng: &mut Rng) -> char {
    char::from_u32(0x4e00 + rng.below(0x5000) as u32).unwrap_or('中')
}

/// A letter with combining marks; now and then far more than any part holds.
fn combining(rng: &mut Rng, out: &mut String) {
    out.push(['e', 'a', 'Z', 'ก', 'क'][rng.below(5)]);
    let marks = if rng.below(10) == 0 {
        10 + rng.below(200)
    } else {
        1 + rng.below(3)
    };
    for _ in 0..marks {
        out.push(char::from_u32(0x300 + rng.below(0x70) as u32).unwrap_or('\u{301}'));
    }
}

/// One piece of text; markdown only when `markdown`.
fn piece(rng: &mut Rng, markdown: bool, out: &mut String) {
    match rng.below(if markdown { 100 } else { 85 }) {
        0..=17 => {
            out.push_str(pick(rng, WORDS));
            out.push(' ');
        }
        18..=37 => {
            for _ in 0..1 + rng.below(30) {
                out.push(cjk(rng));
            }
        }
        38..=47 => out.push_str(pick(rng, PUNCTUATION)),
        48..=61 => out.push_str(pick(rng, SPACES)),
        62..=66 => out.push_str(pick(rng, EMOJI)),
        67..=71 => combining(rng, out),
        72..=78 => {
            for _ in 0..1 + rng.below(5) {
                out.push(any_char(rng));
            }
        }
        79 => {
            // A run of whitespace; now and then longer than some parts.
            let space = pick(rng, &[" ", "\n", "\u{3000}", " \n"]);
            let run = if rng.below(8) == 0 {
                20 + rng.below(1500)
            } else {
                2 + rng.below(8)
            };
            out.push_str(&space.repeat(run));
        }
        80..=82 => {
            // A long run without any natural boundary.
            let unit = pick(rng, &["x", "中", "😀", "e\u{301}"]);
            out.push_str(&unit.repeat(20 + rng.below(400)));
        }
        83..=84 => {
            for _ in 0..50 + rng.below(300) {
                out.push(cjk(rng));
                if rng.below(12) == 0 {
                    out.push_str(pick(rng, PUNCTUATION));
                }
            }
        }
        _ => out.push_str(pick(rng, MARKDOWN)),
    }
}

fn random_text(rng: &mut Rng, markdown: bool) -> String {
    let pieces = match rng.below(10) {
        0 => 0,
        1..=6 => rng.below(40),
        _ => 40 + rng.below(400),
    };
    let mut text = String::new();
    for _ in 0..pieces {
        piece(rng, markdown, &mut text);
    }
    if !markdown {
        text.retain(|c| !MARKDOWN_CHARS.contains(&c));
    }
    text
}

fn is_blank(text: &str) -> bool {
    text.chars().all(char::is_whitespace)
}

fn longest_whitespace_run(text: &str) -> usize {
    let mut run = 0;
    let mut longest = 0;
    for c in text.chars() {
        run = if c.is_whitespace() {
            run + c.len_utf8()
        } else {
            0
        };
        longest = longest.max(run);
    }
    longest
}

/// Whether `to` is `from` with some whitespace characters removed and nothing else.
fn only_whitespace_removed(from: &str, to: &str) -> bool {
    let mut to = to.chars().peekable();
    for c in from.chars() {
        if to.peek() == Some(&c) {
            to.next();
        } else if !c.is_whitespace() {
            return false;
        }
    }
    to.next().is_none()
}

/// `text` without the blank lines before it and the whitespace after it.
fn without_blank_edges(text: &str) -> &str {
    let body = text.trim_end();
    let lead = &body[..body.len() - body.trim_start().len()];
    match lead.rfind('\n') {
        Some(newline) => &body[newline + 1..],
        None => body,
    }
}

/// Every part is something WeChat accepts: not empty, not blank, at most `max` bytes.
fn assert_sendable(parts: &[String], max: usize, context: &str) {
    for part in parts {
        assert!(!part.is_empty(), "empty part in {context}: {parts:?}");
        assert!(!is_blank(part), "blank part in {context}: {parts:?}");
        assert!(
            part.len() <= max,
            "part of {} > {max} bytes in {context}",
            part.len()
        );
    }
}

/// What the property test saw, so it can't pass by testing nothing.
#[derive(Default, Debug)]
struct Seen {
    cases: usize,
    multi_part: usize,
    rendered_differs: usize,
    exact: usize,
    folded: usize,
    cut_inside_grapheme: usize,
    empty_plans: usize,
    over_budget: usize,
    packed_tighter: usize,
}

/// Checks one text at one limit; returns what it saw.
fn check(text: &str, max: usize, left: u32, seen: &mut Seen) {
    let composer = Composer::new().max_bytes(max);
    let rendered = composer.render(text);
    let plan = composer.compose(text);
    let context = format!("max {max}, text {text:?}");
    seen.cases += 1;
    seen.rendered_differs += usize::from(rendered != text);

    assert_sendable(plan.parts(), max, &context);
    assert_eq!(plan.parts().concat(), plan.text(), "{context}");
    assert_eq!(plan.len(), plan.parts().len());
    assert_eq!(plan.max_bytes(), max);
    if is_blank(&rendered) {
        assert!(plan.is_empty() && plan.text().is_empty(), "{context}");
        seen.empty_plans += 1;
        assert_eq!(plan.fit(left), Ok(Vec::new()));
        return;
    }
    assert!(!plan.is_empty(), "{context}");
    // Nothing visible is lost; whitespace only at the edges and in overlong runs.
    assert!(only_whitespace_removed(&rendered, plan.text()), "{context}");
    assert!(
        longest_whitespace_run(plan.text()) <= (max - 4) / 2,
        "{context}"
    );
    if longest_whitespace_run(&rendered) <= (max - 4) / 2 {
        assert_eq!(plan.text(), without_blank_edges(&rendered), "{context}");
        seen.exact += 1;
    } else {
        seen.folded += 1;
    }
    if plan.len() > 1 {
        seen.multi_part += 1;
    }

    // Cuts fall between graphemes, except inside one too long to share a part with the
    // whitespace before it.
    let whole = plan.text();
    let graphemes: Vec<(usize, &str)> = whole.grapheme_indices(true).collect();
    let mut at = 0;
    for part in plan.parts().iter().take(plan.len() - 1) {
        at += part.len();
        assert!(whole.is_char_boundary(at));
        let inside = match graphemes.binary_search_by_key(&at, |(start, _)| *start) {
            Ok(_) => continue,
            Err(after) => graphemes[after - 1].1,
        };
        assert!(
            inside.len() > max - (max - 4) / 2,
            "cut inside a grapheme of {} bytes in {context}",
            inside.len()
        );
        seen.cut_inside_grapheme += 1;
    }

    check_fit(&plan, left, seen, &context);
}

fn check_fit(plan: &ReplyPlan, left: u32, seen: &mut Seen, context: &str) {
    let max = plan.max_bytes();
    let context = format!("left {left}, {context}");
    match plan.clone().fit(left) {
        Ok(parts) => {
            assert!(parts.len() <= left as usize, "{context}");
            assert_sendable(&parts, max, &context);
            assert_eq!(parts.concat(), plan.text(), "{context}");
            if plan.len() <= left as usize {
                assert_eq!(parts, plan.parts(), "{context}");
            } else {
                seen.packed_tighter += 1;
            }
        }
        Err(over) => {
            seen.over_budget += 1;
            assert!(plan.len() > left as usize, "{context}");
            assert_eq!(over.left(), left);
            assert!(over.needed() > left, "{context}");
            assert!(over.needed() as usize <= plan.len(), "{context}");
            assert_eq!(over.clone().into_plan(), *plan);

            let (now, later) = over.clone().send_what_fits();
            assert_eq!(now.len(), left as usize, "{context}");
            assert!(!later.is_empty(), "{context}");
            assert_sendable(&now, max, &context);
            assert_sendable(later.parts(), max, &context);
            assert_eq!(later.parts().concat(), later.text());
            assert_eq!(
                format!("{}{}", now.concat(), later.text()),
                plan.text(),
                "{context}"
            );

            let Shortened { parts, dropped } = over.shorten();
            assert_eq!(parts.len(), left as usize, "{context}");
            assert_sendable(&parts, max, &context);
            assert!(!is_blank(&dropped), "something visible was cut: {context}");
            let Some((last, first)) = parts.split_last() else {
                assert_eq!(dropped, plan.text(), "{context}");
                return;
            };
            let kept = last
                .strip_suffix(TRUNCATION_MARKER)
                .unwrap_or_else(|| panic!("no marker on {last:?}: {context}"));
            assert_eq!(
                format!("{}{kept}{dropped}", first.concat()),
                plan.text(),
                "{context}"
            );
        }
    }
}

#[test]
fn any_text_becomes_sendable_parts_that_lose_nothing() {
    let mut rng = Rng(0x5eed_c0de_2048_0005);
    let mut seen = Seen::default();
    for _ in 0..6000 {
        let text = random_text(&mut rng, true);
        let max = MAX_BYTES[rng.below(MAX_BYTES.len())];
        let left = rng.below(7) as u32;
        check(&text, max, left, &mut seen);
    }
    // The generator reached every path the assertions are about.
    assert_eq!(seen.cases, 6000);
    assert!(seen.multi_part > 1500, "{seen:?}");
    assert!(seen.rendered_differs > 3000, "{seen:?}");
    assert!(seen.exact > 3000, "{seen:?}");
    assert!(seen.folded > 50, "{seen:?}");
    assert!(seen.cut_inside_grapheme > 20, "{seen:?}");
    assert!(seen.empty_plans > 300, "{seen:?}");
    assert!(seen.over_budget > 500, "{seen:?}");
    assert!(seen.packed_tighter > 20, "{seen:?}");
}

#[test]
fn plain_text_renders_as_it_is() {
    let mut rng = Rng(0x9a1a_7e47_0000_0001);
    let mut seen = Seen::default();
    let mut nonblank = 0;
    for _ in 0..3000 {
        let text = random_text(&mut rng, false);
        assert_eq!(Composer::new().render(&text), text);
        // With markdown off, any text renders as it is, markdown included.
        let marked = random_text(&mut rng, true).replace('\r', "");
        assert_eq!(Composer::new().markdown(false).render(&marked), marked);
        if !is_blank(&text) && longest_whitespace_run(&text) <= (MAX_TEXT_BYTES - 4) / 2 {
            let plan = Composer::new().compose(&text);
            assert_eq!(plan.text(), without_blank_edges(&text));
            nonblank += 1;
        }
        let max = MAX_BYTES[rng.below(MAX_BYTES.len())];
        check(&text, max, rng.below(7) as u32, &mut seen);
    }
    assert!(nonblank > 1500, "{nonblank}");
    assert!(seen.multi_part > 500, "{seen:?}");
}

/// Ten paragraphs of 1500 bytes: ten tidy parts, eight when packed tight.
fn long_answer() -> String {
    let paragraph = format!("{}。", "长".repeat(499));
    assert_eq!(paragraph.len(), 1500);
    vec![paragraph; 10].join("\n\n")
}

#[test]
fn fit_returns_the_parts_when_they_fit() {
    let plan = Composer::new().compose(&long_answer());
    assert_eq!(plan.len(), 10);
    let parts = plan.clone().fit(10).expect("ten parts fit in ten");
    assert_eq!(parts, plan.parts());
    assert_eq!(parts.concat(), plan.text());
}

#[test]
fn fit_packs_tighter_before_giving_up() {
    let plan = Composer::new().compose(&long_answer());
    let parts = plan.clone().fit(8).expect("eight tight parts");
    assert_eq!(parts.len(), 8);
    assert_sendable(&parts, MAX_TEXT_BYTES, "tight");
    assert_eq!(parts.concat(), plan.text());
}

#[test]
fn over_budget_says_how_many_are_needed() {
    let plan = Composer::new().compose(&long_answer());
    let over: OverBudget = plan.fit(5).expect_err("eight parts don't fit in five");
    assert_eq!((over.needed(), over.left()), (8, 5));
    assert_eq!(
        over.to_string(),
        "the answer needs 8 messages and 5 are left until the customer writes again"
    );
}

#[test]
fn send_what_fits_keeps_the_rest_for_later() {
    let plan = Composer::new().compose(&long_answer());
    let over = plan.clone().fit(5).expect_err("over budget");
    let (now, later) = over.send_what_fits();
    assert_eq!(now.len(), 5);
    assert_sendable(&now, MAX_TEXT_BYTES, "now");
    assert_eq!(format!("{}{}", now.concat(), later.text()), plan.text());
    // The rest fits the next window.
    let rest = later.clone().fit(5).expect("the rest fits in five");
    assert_eq!(rest.concat(), later.text());
    // Nothing left: nothing now, everything later.
    let (now, later) = plan.clone().fit(0).expect_err("none left").send_what_fits();
    assert!(now.is_empty());
    assert_eq!(later, plan);
}

#[test]
fn shorten_gives_exactly_the_parts_left_and_reports_the_rest() {
    let plan = Composer::new().compose(&long_answer());
    let Shortened { parts, dropped } = plan.clone().fit(5).expect_err("over").shorten();
    assert_eq!(parts.len(), 5);
    assert_sendable(&parts, MAX_TEXT_BYTES, "shortened");
    let last = parts.last().expect("five parts");
    assert!(last.ends_with(TRUNCATION_MARKER));
    let kept = &last[..last.len() - TRUNCATION_MARKER.len()];
    assert_eq!(
        format!("{}{kept}{dropped}", parts[..4].concat()),
        plan.text()
    );
    assert!(
        dropped.len() > 4000,
        "about three parts were cut: {}",
        dropped.len()
    );
    // The marker follows the text, not a blank line.
    assert!(!kept.ends_with(char::is_whitespace));

    let marker = "……（内容过长，已省略）";
    let Shortened { parts, .. } = plan.clone().fit(2).expect_err("over").shorten_with(marker);
    assert_eq!(parts.len(), 2);
    assert!(parts[1].ends_with(marker) && parts[1].len() <= MAX_TEXT_BYTES);

    let Shortened { parts, dropped } = plan.clone().fit(0).expect_err("none").shorten();
    assert!(parts.is_empty());
    assert_eq!(dropped, plan.text());
}

#[test]
fn an_empty_answer_has_nothing_to_send() {
    for text in ["", " ", "\n\n\t", "```\n```", "# ", "\r\n"] {
        let plan = Composer::new().compose(text);
        assert!(plan.is_empty(), "{text:?}: {plan:?}");
        assert_eq!(plan.fit(0), Ok(Vec::new()));
    }
}

#[test]
fn an_llm_answer_reads_well_in_wechat() {
    let answer = "## 退货流程\n\n\
        1. 打开**订单详情**\n\
        2. 点击 `申请退货`\n\n\
        - 运费：*商家承担*\n\
        - 详见 [帮助中心](https://help.example.com/return_policy)\n\n\
        > 注意：7 天内有效\n\n\
        | 项目 | 时限 |\n|---|---|\n| 退款 | 3 天 |\n\n\
        ```\nTRACKING_ID=123\n```";
    let plan = Composer::new().compose(answer);
    assert_eq!(
        plan.parts(),
        ["退货流程\n\n\
          1. 打开订单详情\n\
          2. 点击 申请退货\n\n\
          • 运费：商家承担\n\
          • 详见 帮助中心 (https://help.example.com/return_policy)\n\n\
          │ 注意：7 天内有效\n\n\
          项目 | 时限\n退款 | 3 天\n\n\
          TRACKING_ID=123"]
    );
    // Parts are what `send_text` takes.
    let _: Vec<String> = plan.into_iter().collect();
}
