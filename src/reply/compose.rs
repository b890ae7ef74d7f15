//! Long answers as WeChat text messages: markdown rendered as plain text (WeChat shows `**`
//! and `#` as they are), split under the 2048-byte limit of `text.content` at the most
//! natural place, and packed into the replies the customer's window has left.
//!
//! ```no_run
//! # async fn run(client: wecom_kf::Client, answer: &str, left: u32) -> Result<(), wecom_kf::Error> {
//! use wecom_kf::reply::Composer;
//!
//! let parts = match Composer::new().compose(answer).fit(left) {
//!     Ok(parts) => parts,
//!     Err(over) => over.shorten().parts, // or `over.send_what_fits()`: the rest for later
//! };
//! for part in parts {
//!     client.send_text("wmUSER", "wkKFID", part).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! What the composer promises, for any input:
//!
//! * every part is at most `max_bytes` bytes of UTF-8, and none is empty or whitespace only
//!   (WeChat refuses empty content with 44004);
//! * parts are cut at grapheme boundaries (an emoji with skin tone or ZWJ, a letter with
//!   its accents stay whole), except inside a grapheme too long for a message;
//! * the parts, put together, are exactly [`ReplyPlan::text`]: the rendered text, no
//!   visible character added or dropped. The only whitespace it does not carry is what a
//!   message can't show: blank lines before the text, whitespace after it, and whatever
//!   exceeds `(max_bytes - 4) / 2` bytes in a run of consecutive whitespace (such a run
//!   could otherwise fill a message with nothing visible);
//! * when the parts don't fit the budget, [`ReplyPlan::fit`] says so before anything is
//!   sent, and the caller chooses to keep the rest for later or to shorten with a visible
//!   marker; what is cut off is returned, never dropped silently.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use unicode_segmentation::UnicodeSegmentation;

/// WeChat's limit for a text message's `content`, in bytes of UTF-8: longer is refused
/// (45002) or cut, depending on the path.
pub const MAX_TEXT_BYTES: usize = 2048;

/// The smallest `max_bytes` a [`Composer`] accepts: room for the longest character (4
/// bytes) next to a little whitespace, so that every part can hold something visible.
pub const MIN_TEXT_BYTES: usize = 16;

/// What [`OverBudget::shorten`] puts where it cut the text, so the reader sees that the
/// answer goes on.
pub const TRUNCATION_MARKER: &str = "…";

/// What a bullet list item's marker (`-`, `*`, `+`) becomes.
const BULLET: &str = "• ";
/// What a blockquote's `>` becomes, once per level.
const QUOTE: &str = "│ ";
/// What a horizontal rule (`---`, `***`, `___`) becomes.
const RULE: &str = "────────";
/// What separates the cells of a table row.
const CELL_SEPARATOR: &str = " | ";

/// Turns an answer (typically an LLM's markdown) into WeChat text messages.
///
/// `Composer::new()` renders markdown and splits at [`MAX_TEXT_BYTES`]; it is `Copy`, so
/// one configured composer can serve every reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Composer {
    max_bytes: usize,
    markdown: bool,
}

impl Default for Composer {
    fn default() -> Self {
        Self::new()
    }
}

impl Composer {
    /// Markdown rendered as plain text, parts of at most [`MAX_TEXT_BYTES`].
    pub const fn new() -> Self {
        Composer {
            max_bytes: MAX_TEXT_BYTES,
            markdown: true,
        }
    }

    /// The largest part in bytes of UTF-8, for a channel with another limit (or a test).
    /// Values below [`MIN_TEXT_BYTES`] are raised to it.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(MIN_TEXT_BYTES);
        self
    }

    /// Whether the text is markdown to render (the default). Turn it off for text that
    /// is already meant to be read as it is, where `*` or `#` are not markup.
    pub fn markdown(mut self, markdown: bool) -> Self {
        self.markdown = markdown;
        self
    }

    /// The text as WeChat should show it, before splitting.
    ///
    /// Line endings become `\n` (`\r\n` and a lone `\r` alike). With markdown on, headings
    /// lose their `#`, bullets become `• `, emphasis and inline code lose their marks,
    /// fenced code loses its fences and keeps its lines verbatim, `[text](url)` becomes
    /// `text (url)`, `![alt](url)` becomes `alt (url)`, `> ` becomes `│ `, rules become a
    /// line of `─`, and table rows become cells separated by ` | `. Text without markdown
    /// comes out unchanged. Not rendered: HTML, setext headings, reference links,
    /// emphasis across lines.
    pub fn render(&self, text: &str) -> String {
        let text = normalize_newlines(text);
        if self.markdown {
            render_markdown(&text)
        } else {
            text.into_owned()
        }
    }

    /// Renders `text` and splits it into parts of at most `max_bytes`, cut preferably
    /// after a blank line, then after a line, a sentence (`。！？；`, or `.!?;` and a
    /// space), a clause mark (`，、：`) or a space, and only then between graphemes.
    ///
    /// The plan's text is the rendered text without the blank lines before it and the
    /// whitespace after it, and with runs of whitespace longer than `(max_bytes - 4) / 2`
    /// bytes shortened to that. A text with nothing visible gives an empty plan: there is
    /// nothing to send.
    pub fn compose(&self, text: &str) -> ReplyPlan {
        let rendered = self.render(text);
        let folded = fold_whitespace(rendered, whitespace_cap(self.max_bytes));
        ReplyPlan::new(trim_edges(folded), self.max_bytes)
    }
}

/// A composed answer: its parts, in order, ready to send as text messages.
///
/// The parts put together are exactly [`text`](Self::text). Each part is a `String`, which
/// `Client::send_text` takes as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPlan {
    text: String,
    parts: Vec<String>,
    max_bytes: usize,
}

impl ReplyPlan {
    fn new(text: String, max_bytes: usize) -> Self {
        if text.chars().all(char::is_whitespace) {
            return ReplyPlan {
                text: String::new(),
                parts: Vec::new(),
                max_bytes,
            };
        }
        let parts = split(&text, max_bytes, Strategy::Tidy);
        ReplyPlan {
            text,
            parts,
            max_bytes,
        }
    }

    /// The parts, in sending order.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// How many messages the plan takes.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether there is nothing to send (the text had nothing visible).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The whole text the parts carry: what a reader sees once every part arrived.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The largest part this plan allows, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The parts, to send them.
    pub fn into_parts(self) -> Vec<String> {
        self.parts
    }

    /// The parts if they fit in `left` messages (the replies the customer's window has
    /// left), before anything is sent.
    ///
    /// When the tidy cuts need more messages than that, the text is packed tighter (at
    /// any natural boundary, then between any graphemes) before giving up: `Ok` carries
    /// the whole text in at most `left` parts. Otherwise [`OverBudget`] says how many
    /// are needed and lets the caller choose what to do.
    pub fn fit(self, left: u32) -> Result<Vec<String>, OverBudget> {
        let left_parts = usize::try_from(left).unwrap_or(usize::MAX);
        if self.parts.len() <= left_parts {
            return Ok(self.parts);
        }
        let dense = split(&self.text, self.max_bytes, Strategy::Dense);
        if dense.len() <= left_parts {
            return Ok(dense);
        }
        let tight = split(&self.text, self.max_bytes, Strategy::Tight);
        if tight.len() <= left_parts {
            return Ok(tight);
        }
        Err(OverBudget {
            needed: u32::try_from(tight.len()).unwrap_or(u32::MAX),
            left,
            dense,
            plan: self,
        })
    }
}

impl IntoIterator for ReplyPlan {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;

    /// The parts, in sending order.
    fn into_iter(self) -> Self::IntoIter {
        self.parts.into_iter()
    }
}

impl<'a> IntoIterator for &'a ReplyPlan {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    /// The parts, in sending order.
    fn into_iter(self) -> Self::IntoIter {
        self.parts.iter()
    }
}

/// The answer needs more messages than the budget has left. Nothing was sent; choose
/// [`send_what_fits`](Self::send_what_fits) (the rest waits for the customer's next
/// message) or [`shorten`](Self::shorten) (the rest is cut, with a marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    needed: u32,
    left: u32,
    /// The text cut at natural boundaries only where they fill a part at least half.
    dense: Vec<String>,
    plan: ReplyPlan,
}

impl OverBudget {
    /// Messages the whole answer needs, packed as tightly as the composer can.
    pub fn needed(&self) -> u32 {
        self.needed
    }

    /// Messages the budget has left.
    pub fn left(&self) -> u32 {
        self.left
    }

    /// The parts to send now (as many as are left, possibly none) and the rest as a plan
    /// of its own, to send when the customer writes again. Nothing is dropped: the parts
    /// now and the rest's text put together are the whole text.
    pub fn send_what_fits(self) -> (Vec<String>, ReplyPlan) {
        let max_bytes = self.plan.max_bytes;
        let left = self.left_parts();
        let mut now = self.dense;
        let later = now.split_off(left.min(now.len()));
        (now, ReplyPlan::new(later.concat(), max_bytes))
    }

    /// Exactly `left` parts: the last one is cut where the budget ends and marked with
    /// [`TRUNCATION_MARKER`]. [`Shortened::dropped`] has what was cut off.
    pub fn shorten(self) -> Shortened {
        self.shorten_with(TRUNCATION_MARKER)
    }

    /// [`shorten`](Self::shorten) with another marker, like `"……（内容过长，已省略）"`. A
    /// blank marker is replaced by [`TRUNCATION_MARKER`] (the cut must show); one longer
    /// than a quarter of `max_bytes` is cut to that.
    pub fn shorten_with(self, marker: &str) -> Shortened {
        let max_bytes = self.plan.max_bytes;
        let left = self.left_parts();
        if left == 0 {
            return Shortened {
                parts: Vec::new(),
                dropped: self.plan.text,
            };
        }
        let mut parts = self.dense;
        let rest = parts.split_off((left - 1).min(parts.len())).concat();
        let marker = fitted_marker(marker, max_bytes);
        let room = max_bytes.saturating_sub(marker.len());
        let keep = if rest.len() <= room {
            rest.len()
        } else {
            Segmented::new(&rest).cut(0, 0, room, Strategy::Dense, false)
        };
        let kept = rest.get(..keep).unwrap_or("").trim_end();
        let dropped = rest.get(kept.len()..).unwrap_or("").to_owned();
        parts.push(format!("{kept}{marker}"));
        Shortened { parts, dropped }
    }

    /// The whole plan, to do something else with it.
    pub fn into_plan(self) -> ReplyPlan {
        self.plan
    }

    fn left_parts(&self) -> usize {
        usize::try_from(self.left).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the answer needs {} messages and {} are left until the customer writes again",
            self.needed, self.left
        )
    }
}

impl std::error::Error for OverBudget {}

/// An answer shortened to the budget by [`OverBudget::shorten`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortened {
    /// Exactly as many parts as were left; the last ends with the marker.
    pub parts: Vec<String>,
    /// What was cut off: the parts without the marker, followed by this, are the whole
    /// text.
    pub dropped: String,
}

// ---------------------------------------------------------------------------------------
// Rendering

fn normalize_newlines(text: &str) -> Cow<'_, str> {
    if !text.contains('\r') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            chars.next_if_eq(&'\n');
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn render_markdown(text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut fence: Option<Fence> = None;
    let mut i = 0;
    while let Some(&line) = lines.get(i) {
        i += 1;
        if let Some(open) = fence {
            if open.closed_by(line) {
                fence = None;
            } else {
                out.push(line.to_owned());
            }
            continue;
        }
        if let Some(open) = Fence::opened_by(line) {
            fence = Some(open);
            continue;
        }
        if let Some(header) = table_header(line, lines.get(i).copied()) {
            out.push(header);
            i += 1; // the delimiter row
            while let Some(&row) = lines.get(i)
                && is_table_row(row)
            {
                out.push(table_row(&split_cells(row)));
                i += 1;
            }
            continue;
        }
        out.push(block(line));
    }
    out.join("\n")
}

/// An open code fence: its character and length, which the closing fence must match.
#[derive(Debug, Clone, Copy)]
struct Fence {
    ch: char,
    len: usize,
}

impl Fence {
    fn opened_by(line: &str) -> Option<Fence> {
        let body = line.trim_start();
        let ch = body.chars().next().filter(|c| matches!(c, '`' | '~'))?;
        let len = body.chars().take_while(|c| *c == ch).count();
        if len < 3 {
            return None;
        }
        // ```js`x` is inline code, not a fence.
        let info = body.get(len..).unwrap_or("");
        if ch == '`' && info.contains('`') {
            return None;
        }
        Some(Fence { ch, len })
    }

    fn closed_by(self, line: &str) -> bool {
        let body = line.trim();
        body.chars().count() >= self.len && body.chars().all(|c| c == self.ch)
    }
}

/// A header row, when `line` starts a table (the next line is its delimiter row).
fn table_header(line: &str, next: Option<&str>) -> Option<String> {
    if !line.contains('|') {
        return None;
    }
    let next = next.filter(|n| n.contains('|'))?;
    let delimiters = split_cells(next);
    if delimiters.is_empty() || !delimiters.iter().all(|c| is_delimiter_cell(c)) {
        return None;
    }
    let header = split_cells(line);
    (header.len() == delimiters.len()).then(|| table_row(&header))
}

fn is_delimiter_cell(cell: &str) -> bool {
    let cell = cell.trim();
    let cell = cell.strip_prefix(':').unwrap_or(cell);
    let cell = cell.strip_suffix(':').unwrap_or(cell);
    !cell.is_empty() && cell.chars().all(|c| c == '-')
}

fn is_table_row(line: &str) -> bool {
    !line.trim().is_empty() && line.contains('|')
}

fn table_row(cells: &[String]) -> String {
    cells
        .iter()
        .map(|cell| inline(cell.trim()))
        .collect::<Vec<_>>()
        .join(CELL_SEPARATOR)
}

/// A table row's cells: split at `|`, except an escaped `\|` or one inside inline code.
fn split_cells(line: &str) -> Vec<String> {
    let row = line.trim();
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = match row.strip_suffix('|') {
        Some(inner) if !inner.ends_with('\\') => inner,
        _ => row,
    };
    let cs: Vec<char> = row.chars().collect();
    let code = code_spans(&cs);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut i = 0;
    while let Some(&c) = cs.get(i) {
        if let Some(Some((close, run))) = code.get(i) {
            let end = close + run;
            cell.extend(cs.get(i..end).unwrap_or(&[]));
            i = end;
            continue;
        }
        match c {
            '\\' if cs.get(i + 1) == Some(&'|') => {
                cell.push_str("\\|");
                i += 2;
            }
            '|' => {
                cells.push(std::mem::take(&mut cell));
                i += 1;
            }
            _ => {
                cell.push(c);
                i += 1;
            }
        }
    }
    cells.push(cell);
    cells
}

/// One line outside code and tables: blockquote levels, then a heading, a rule, a
/// bullet, or a paragraph line (numbered items stay as they are).
fn block(line: &str) -> String {
    let mut levels = 0;
    let mut inner = line;
    while let Some(rest) = inner.trim_start_matches([' ', '\t']).strip_prefix('>') {
        levels += 1;
        inner = rest.strip_prefix(' ').unwrap_or(rest);
    }
    if levels == 0 {
        return leaf(line);
    }
    let mut out = QUOTE.repeat(levels);
    if inner.trim().is_empty() {
        out.truncate(out.trim_end().len());
    } else {
        out.push_str(&leaf(inner));
    }
    out
}

fn leaf(line: &str) -> String {
    let body = line.trim_start_matches([' ', '\t']);
    if body.is_empty() {
        return line.to_owned();
    }
    let indent = line.get(..line.len() - body.len()).unwrap_or("");
    if let Some(title) = heading(body).filter(|_| indent.len() <= 3) {
        return inline(title);
    }
    if is_rule(body) {
        return RULE.to_owned();
    }
    if let Some(item) = bullet(body) {
        let (marker, item) = if let Some(rest) = item.strip_prefix("[ ]") {
            ("☐ ", rest.trim_start())
        } else if let Some(rest) = item
            .strip_prefix("[x]")
            .or_else(|| item.strip_prefix("[X]"))
        {
            ("☑ ", rest.trim_start())
        } else {
            (BULLET, item)
        };
        let mut out = format!("{indent}{marker}{}", inline(item));
        out.truncate(out.trim_end().len());
        return out;
    }
    inline(line)
}

/// An ATX heading's text: `# Title`, `## Title ##`.
fn heading(body: &str) -> Option<&str> {
    let hashes = body.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = body.get(hashes..)?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let title = rest.trim();
    let unclosed = title.trim_end_matches('#');
    if unclosed.is_empty() || unclosed.ends_with([' ', '\t']) {
        Some(unclosed.trim_end())
    } else {
        Some(title)
    }
}

fn is_rule(body: &str) -> bool {
    let mut marks = body.chars().filter(|c| !matches!(c, ' ' | '\t'));
    let Some(first) = marks.next().filter(|c| matches!(c, '-' | '*' | '_')) else {
        return false;
    };
    let mut count = 1;
    for c in marks {
        if c != first {
            return false;
        }
        count += 1;
    }
    count >= 3
}

/// A bullet item's text: `- item`, `* item`, `+ item`.
fn bullet(body: &str) -> Option<&str> {
    let rest = body.strip_prefix(['-', '*', '+'])?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim_start_matches([' ', '\t']))
}

/// A piece of a line for emphasis matching: text, or a run of `*`, `_` or `~~` that may
/// open or close emphasis.
#[derive(Debug)]
enum Tok {
    Text(String),
    Delim {
        ch: char,
        len: usize,
        open: bool,
        close: bool,
        matched: bool,
    },
}

/// Inline markdown of one line: escapes, code, links, images, autolinks, emphasis. Bare
/// URLs are kept as they are (their `_` are not emphasis).
fn inline(line: &str) -> String {
    if !line.contains(['\\', '`', '[', '<', '*', '_', '~']) {
        return line.to_owned();
    }
    let cs: Vec<char> = line.chars().collect();
    let code = code_spans(&cs);
    let brackets = match_pairs(&cs, &code, '[', ']');
    let parens = match_pairs(&cs, &code, '(', ')');
    let mut toks: Vec<Tok> = Vec::new();
    let mut buf = String::new();
    // Open links: the index of their `]`, what follows the label, and where to go on.
    let mut links: Vec<(usize, String, usize)> = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        if let Some((end, _, _)) = links.last()
            && i >= *end
        {
            if let Some((_, suffix, resume)) = links.pop() {
                buf.push_str(&suffix);
                i = i.max(resume);
            }
            continue;
        }
        let Some(&c) = cs.get(i) else { break };
        let next = cs.get(i + 1).copied();
        match c {
            '\\' if next.is_some_and(|n| n.is_ascii_punctuation()) => {
                buf.extend(next);
                i += 2;
            }
            '`' => {
                let run = run_len(&cs, i, '`');
                if let Some(Some((close, _))) = code.get(i) {
                    let content: String = cs.get(i + run..*close).unwrap_or(&[]).iter().collect();
                    let stripped = content
                        .strip_prefix(' ')
                        .and_then(|s| s.strip_suffix(' '))
                        .filter(|s| !s.trim().is_empty());
                    buf.push_str(stripped.unwrap_or(&content));
                    i = close + run;
                } else {
                    buf.extend(std::iter::repeat_n('`', run));
                    i += run;
                }
            }
            '!' | '[' => {
                let at = if c == '!' { i + 1 } else { i };
                match link_at(&cs, at, &brackets, &parens) {
                    Some((close, url, resume)) => {
                        let label: String = cs.get(at + 1..close).unwrap_or(&[]).iter().collect();
                        let label = label.trim();
                        if label.is_empty() || label == url {
                            buf.push_str(&url);
                            i = resume;
                        } else {
                            let suffix = if url.is_empty() {
                                String::new()
                            } else {
                                format!(" ({url})")
                            };
                            links.push((close, suffix, resume));
                            i = at + 1;
                        }
                    }
                    None => {
                        buf.push(c);
                        i += 1;
                    }
                }
            }
            '<' => match autolink_at(&cs, i) {
                Some((url, resume)) => {
                    buf.push_str(&url);
                    i = resume;
                }
                None => {
                    buf.push(c);
                    i += 1;
                }
            },
            'h' => {
                let stop = links.last().map_or(cs.len(), |(end, _, _)| *end);
                match bare_url_at(&cs, i, stop) {
                    Some(end) => {
                        buf.extend(cs.get(i..end).unwrap_or(&[]));
                        i = end;
                    }
                    None => {
                        buf.push(c);
                        i += 1;
                    }
                }
            }
            '*' | '_' | '~' => {
                let len = run_len(&cs, i, c);
                let is_delim = match c {
                    '~' => len == 2,
                    _ => len <= 3,
                };
                if is_delim {
                    let prev = i.checked_sub(1).and_then(|p| cs.get(p)).copied();
                    let after = cs.get(i + len).copied();
                    let (open, close) = flanking(c, len, prev, after);
                    if !buf.is_empty() {
                        toks.push(Tok::Text(std::mem::take(&mut buf)));
                    }
                    toks.push(Tok::Delim {
                        ch: c,
                        len,
                        open,
                        close,
                        matched: false,
                    });
                } else {
                    buf.extend(std::iter::repeat_n(c, len));
                }
                i += len;
            }
            _ => {
                buf.push(c);
                i += 1;
            }
        }
    }
    while let Some((_, suffix, _)) = links.pop() {
        buf.push_str(&suffix);
    }
    if !buf.is_empty() {
        toks.push(Tok::Text(buf));
    }
    pair_emphasis(&mut toks);
    let mut out = String::with_capacity(line.len());
    for tok in toks {
        match tok {
            Tok::Text(text) => out.push_str(&text),
            Tok::Delim { matched: true, .. } => {}
            Tok::Delim { ch, len, .. } => out.extend(std::iter::repeat_n(ch, len)),
        }
    }
    out
}

fn run_len(cs: &[char], at: usize, ch: char) -> usize {
    cs.get(at..)
        .map_or(0, |rest| rest.iter().take_while(|c| **c == ch).count())
}

/// Whether a delimiter run may open and close emphasis. More lenient than CommonMark
/// about punctuation (`**注意：**这是` is bold), stricter inside words: `snake_case`,
/// `2*3` and `a*b` are not emphasis.
fn flanking(ch: char, len: usize, prev: Option<char>, next: Option<char>) -> (bool, bool) {
    let space = |c: Option<char>| c.is_none_or(char::is_whitespace);
    let open = !space(next);
    let close = !space(prev);
    let alnum = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let ascii_alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    match ch {
        '_' => (open && !alnum(prev), close && !alnum(next)),
        '*' if len == 1 && ascii_alnum(prev) && ascii_alnum(next) => (false, false),
        _ => (open, close),
    }
}

/// Pairs each closing run with the nearest open run of the same character and length;
/// runs opened in between are left as text, as CommonMark does.
fn pair_emphasis(toks: &mut [Tok]) {
    fn kind(ch: char, len: usize) -> Option<usize> {
        match (ch, len) {
            ('*', 1..=3) => Some(len - 1),
            ('_', 1..=3) => Some(len + 2),
            ('~', 2) => Some(6),
            _ => None,
        }
    }
    let mut open: [Vec<usize>; 7] = Default::default();
    for t in 0..toks.len() {
        let Some(Tok::Delim {
            ch,
            len,
            open: opens,
            close: closes,
            ..
        }) = toks.get(t)
        else {
            continue;
        };
        let (opens, closes) = (*opens, *closes);
        let Some(k) = kind(*ch, *len) else { continue };
        let opener = if closes {
            open.get(k).and_then(|stack| stack.last().copied())
        } else {
            None
        };
        if let Some(o) = opener {
            for stack in open.iter_mut() {
                while stack.last().is_some_and(|&x| x >= o) {
                    stack.pop();
                }
            }
            for at in [o, t] {
                if let Some(Tok::Delim { matched, .. }) = toks.get_mut(at) {
                    *matched = true;
                }
            }
        } else if opens && let Some(stack) = open.get_mut(k) {
            stack.push(t);
        }
    }
}

/// For each backtick run that opens inline code: where its closing run (of the same
/// length) starts, and the run's length.
fn code_spans(cs: &[char]) -> Vec<Option<(usize, usize)>> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let run = run_len(cs, i, '`');
        if run > 0 {
            runs.push((i, run));
            i += run;
        } else {
            i += 1;
        }
    }
    let mut next_same: Vec<Option<usize>> = vec![None; runs.len()];
    let mut last_of_len: HashMap<usize, usize> = HashMap::new();
    for (r, &(_, len)) in runs.iter().enumerate().rev() {
        if let Some(slot) = next_same.get_mut(r) {
            *slot = last_of_len.insert(len, r);
        }
    }
    let mut spans = vec![None; cs.len()];
    let mut r = 0;
    while let Some(&(start, len)) = runs.get(r) {
        match next_same.get(r).copied().flatten() {
            Some(closing) => {
                if let (Some(&(close, _)), Some(slot)) = (runs.get(closing), spans.get_mut(start)) {
                    *slot = Some((close, len));
                }
                r = closing + 1;
            }
            None => r += 1,
        }
    }
    spans
}

/// For each `open` character: the index of its matching `close`, skipping escaped
/// characters and inline code.
fn match_pairs(
    cs: &[char],
    code: &[Option<(usize, usize)>],
    open: char,
    close: char,
) -> Vec<Option<usize>> {
    let mut pairs = vec![None; cs.len()];
    let mut stack = Vec::new();
    let mut i = 0;
    while let Some(&c) = cs.get(i) {
        if c == '\\' {
            i += 2;
            continue;
        }
        if let Some(Some((end, run))) = code.get(i) {
            i = end + run;
            continue;
        }
        if c == open {
            stack.push(i);
        } else if c == close
            && let Some(o) = stack.pop()
            && let Some(slot) = pairs.get_mut(o)
        {
            *slot = Some(i);
        }
        i += 1;
    }
    pairs
}

/// A link or image whose `[` is at `at`: the index of its `]`, its URL, and the index
/// after its `)`.
fn link_at(
    cs: &[char],
    at: usize,
    brackets: &[Option<usize>],
    parens: &[Option<usize>],
) -> Option<(usize, String, usize)> {
    if cs.get(at) != Some(&'[') {
        return None;
    }
    let close = (*brackets.get(at)?)?;
    if cs.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = (*parens.get(close + 1)?)?;
    let dest: String = cs.get(close + 2..end)?.iter().collect();
    let dest = dest.trim();
    let url = match dest.strip_prefix('<') {
        Some(rest) => rest.split('>').next().unwrap_or(""),
        None => dest.split_whitespace().next().unwrap_or(""),
    };
    Some((close, url.to_owned(), end + 1))
}

/// `<https://…>` at `at`: the URL and the index after `>`.
fn autolink_at(cs: &[char], at: usize) -> Option<(String, usize)> {
    let rest = cs.get(at + 1..)?;
    let len = rest
        .iter()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '<' | '>'))
        .count();
    if rest.get(len) != Some(&'>') {
        return None;
    }
    let url: String = rest.get(..len)?.iter().collect();
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len())
        .then_some((url, at + len + 2))
}

/// A bare `http(s)://` URL starting at `at` (not inside an ASCII word): the index after it,
/// without trailing punctuation or an unbalanced `)`, and before `stop`.
fn bare_url_at(cs: &[char], at: usize, stop: usize) -> Option<usize> {
    // Chinese text often glues a URL to the word before it: 查看物流http://…
    if at
        .checked_sub(1)
        .and_then(|p| cs.get(p))
        .is_some_and(char::is_ascii_alphanumeric)
    {
        return None;
    }
    let rest = cs.get(at..stop.max(at))?;
    let scheme = ["https://", "http://"].into_iter().find(|scheme| {
        rest.len() > scheme.len() && rest.iter().zip(scheme.chars()).all(|(a, b)| *a == b)
    })?;
    let mut len = rest
        .iter()
        .take_while(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '`' | '"' | '[' | ']'))
        .count();
    let url = rest.get(..len).unwrap_or(&[]);
    let opened = url.iter().filter(|c| **c == '(').count();
    let mut closed = url.iter().filter(|c| **c == ')').count();
    while let Some(&last) = len.checked_sub(1).and_then(|i| rest.get(i)) {
        let trailing = matches!(
            last,
            '.' | ',' | ':' | ';' | '!' | '?' | '*' | '_' | '~' | '\''
        );
        let unbalanced = last == ')' && closed > opened;
        if !(trailing || unbalanced) {
            break;
        }
        closed -= usize::from(last == ')');
        len -= 1;
    }
    (len > scheme.len()).then_some(at + len)
}

// ---------------------------------------------------------------------------------------
// Splitting

/// The most consecutive whitespace (in bytes) a text keeps for parts of `max_bytes`: with
/// at most this much, a part can always hold its whitespace and something visible.
fn whitespace_cap(max_bytes: usize) -> usize {
    max_bytes.saturating_sub(4) / 2
}

/// The text without the blank lines before it (the first line keeps its indentation) and
/// the whitespace after it.
fn trim_edges(text: String) -> String {
    let end = text.trim_end().len();
    let lead = text.len() - text.trim_start().len();
    let start = text
        .get(..lead)
        .and_then(|blank| blank.rfind('\n'))
        .map_or(0, |newline| newline + 1);
    if start == 0 && end == text.len() {
        return text;
    }
    text.get(start..end.max(start)).unwrap_or("").to_owned()
}

/// Shortens every run of consecutive whitespace to at most `cap` bytes.
fn fold_whitespace(text: String, cap: usize) -> String {
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
    if longest <= cap {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    run = 0;
    for c in text.chars() {
        if c.is_whitespace() {
            if run + c.len_utf8() > cap {
                continue;
            }
            run += c.len_utf8();
        } else {
            run = 0;
        }
        out.push(c);
    }
    out
}

/// How parts are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// The best kind of boundary in the part's second half (a blank line, then a line, a
    /// sentence, a clause or a space); the latest natural boundary anywhere if the second
    /// half has none; a grapheme boundary if the part has none.
    Tidy,
    /// The latest natural boundary in the part's second half, else a grapheme boundary.
    Dense,
    /// The latest grapheme boundary: the fewest parts.
    Tight,
}

/// What kind of place a boundary is to cut at, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Clause,
    Sentence,
    Line,
    Paragraph,
}

impl Rank {
    const BEST_FIRST: [Rank; 4] = [Rank::Paragraph, Rank::Line, Rank::Sentence, Rank::Clause];

    fn index(self) -> usize {
        self as usize
    }
}

/// What a visible grapheme ends, for the boundary after it (and after closing quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    None,
    /// `.!?;`: a sentence when whitespace follows.
    Sentence,
    /// `。！？；…`: a sentence as it is.
    CjkSentence,
    /// `，、：`: a clause as it is.
    CjkClause,
}

fn mark_of(c: char) -> Mark {
    match c {
        '.' | '!' | '?' | ';' => Mark::Sentence,
        '。' | '！' | '？' | '；' | '…' | '｡' | '⋯' => Mark::CjkSentence,
        '，' | '、' | '：' | '､' | '﹐' | '﹑' => Mark::CjkClause,
        _ => Mark::None,
    }
}

fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | ')'
            | ']'
            | '}'
            | '”'
            | '’'
            | '」'
            | '』'
            | '）'
            | '】'
            | '》'
            | '〉'
            | '〕'
            | '］'
            | '｝'
            | '»'
            | '›'
    )
}

/// One grapheme and the boundary before it.
#[derive(Debug, Clone, Copy)]
struct Grapheme {
    start: usize,
    end: usize,
    /// Has a character that isn't whitespace.
    visible: bool,
    /// The natural boundary before it, if the boundary is one.
    natural: Option<Rank>,
}

/// A text cut into graphemes, each boundary ranked.
struct Segmented<'a> {
    text: &'a str,
    graphemes: Vec<Grapheme>,
    /// The end of the last character that isn't whitespace.
    visible_end: usize,
}

impl<'a> Segmented<'a> {
    fn new(text: &'a str) -> Self {
        let mut graphemes = Vec::new();
        let mut mark = Mark::None;
        let mut newlines = 0usize;
        let mut spaced = false;
        for (start, g) in text.grapheme_indices(true) {
            let first = g.chars().next().unwrap_or(' ');
            let visible = !g.chars().all(char::is_whitespace);
            let natural =
                if start > 0 && visible && !is_closer(first) && mark_of(first) == Mark::None {
                    if newlines >= 2 {
                        Some(Rank::Paragraph)
                    } else if newlines == 1 {
                        Some(Rank::Line)
                    } else if spaced {
                        Some(match mark {
                            Mark::Sentence | Mark::CjkSentence => Rank::Sentence,
                            _ => Rank::Clause,
                        })
                    } else {
                        match mark {
                            Mark::CjkSentence => Some(Rank::Sentence),
                            Mark::CjkClause => Some(Rank::Clause),
                            _ => None,
                        }
                    }
                } else {
                    None
                };
            graphemes.push(Grapheme {
                start,
                end: start + g.len(),
                visible,
                natural,
            });
            if visible {
                if !is_closer(first) {
                    mark = mark_of(first);
                }
                newlines = 0;
                spaced = false;
            } else {
                newlines += g.matches('\n').count();
                spaced = true;
            }
        }
        let visible_end = text
            .char_indices()
            .rev()
            .find(|(_, c)| !c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        Segmented {
            text,
            graphemes,
            visible_end,
        }
    }

    /// Where to end a part that starts at `pos` (inside or at the start of grapheme `k`)
    /// and may take `max` bytes. The part always holds something visible, and so does the
    /// rest when `rest_visible` (the rest will be sent too).
    fn cut(
        &self,
        pos: usize,
        k: usize,
        max: usize,
        strategy: Strategy,
        rest_visible: bool,
    ) -> usize {
        let limit = pos.saturating_add(max);
        let half = pos.saturating_add(max / 2);
        let first_end = self.graphemes.get(k).map_or(pos, |g| g.end);
        let mut seen = has_visible(self.text.get(pos..first_end).unwrap_or(""));
        let mut natural: [Option<usize>; 4] = [None; 4];
        let mut plain = None;
        let mut any = None;
        for g in self.graphemes.iter().skip(k + 1) {
            if g.start > limit {
                break;
            }
            if seen && (!rest_visible || g.start < self.visible_end) {
                any = Some(g.start);
                if g.visible {
                    plain = Some(g.start);
                    if let Some(slot) = g.natural.and_then(|r| natural.get_mut(r.index())) {
                        *slot = Some(g.start);
                    }
                }
            }
            seen |= g.visible;
        }
        let latest_natural = natural.iter().flatten().max().copied();
        let chosen = match strategy {
            Strategy::Tidy => Rank::BEST_FIRST
                .iter()
                .filter_map(|r| natural.get(r.index()).copied().flatten())
                .find(|b| *b >= half)
                .or(latest_natural),
            Strategy::Dense => latest_natural.filter(|b| *b >= half),
            Strategy::Tight => None,
        };
        if let Some(b) = chosen.or(plain).or(any) {
            return b;
        }
        // No grapheme boundary works: the part's grapheme is longer than the room left.
        let room = if rest_visible {
            limit.min(self.visible_end.saturating_sub(1))
        } else {
            limit
        };
        let c = floor_char_boundary(self.text, room);
        if c > pos && has_visible(self.text.get(pos..c).unwrap_or("")) {
            return c;
        }
        let c = floor_char_boundary(self.text, limit);
        if c > pos {
            return c;
        }
        ceil_char_boundary(self.text, pos + 1)
    }
}

fn has_visible(s: &str) -> bool {
    s.chars().any(|c| !c.is_whitespace())
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while at > 0 && !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while at < s.len() && !s.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// `text` in parts of at most `max_bytes` (`text` has something visible and no run of
/// whitespace over [`whitespace_cap`]).
fn split(text: &str, max_bytes: usize, strategy: Strategy) -> Vec<String> {
    // Most answers fit one part: they need no grapheme boundaries.
    if text.len() <= max_bytes {
        return if text.is_empty() {
            Vec::new()
        } else {
            vec![text.to_owned()]
        };
    }
    let seg = Segmented::new(text);
    let mut parts = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < text.len() {
        if text.len() - pos <= max_bytes {
            parts.push(text.get(pos..).unwrap_or("").to_owned());
            break;
        }
        let cut = seg.cut(pos, k, max_bytes, strategy, true);
        parts.push(text.get(pos..cut).unwrap_or("").to_owned());
        pos = cut;
        while seg.graphemes.get(k).is_some_and(|g| g.end <= pos) {
            k += 1;
        }
    }
    parts
}

/// The marker as it will be used: visible, and at most a quarter of a part.
fn fitted_marker(marker: &str, max_bytes: usize) -> &str {
    let marker = if marker.trim().is_empty() {
        TRUNCATION_MARKER
    } else {
        marker
    };
    let end = floor_char_boundary(marker, max_bytes / 4);
    marker
        .get(..end)
        .filter(|m| !m.is_empty())
        .unwrap_or(TRUNCATION_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(text: &str) -> String {
        Composer::new().render(text)
    }

    /// Plain text split at `max` bytes.
    fn split_plain(max: usize, text: &str) -> Vec<String> {
        Composer::new()
            .markdown(false)
            .max_bytes(max)
            .compose(text)
            .into_parts()
    }

    /// The rank of the boundary before the first grapheme `at` starts with.
    fn rank_before(text: &str, at: &str) -> Option<Rank> {
        let start = text.find(at).expect("in the text");
        let seg = Segmented::new(text);
        seg.graphemes
            .iter()
            .find(|g| g.start == start)
            .expect("a grapheme starts there")
            .natural
    }

    #[test]
    fn headings_lose_their_hashes() {
        assert_eq!(
            md("# Title\n## Sub ##\n###### Six\n####### seven\n#hashtag\n#\n   # indented"),
            "Title\nSub\nSix\n####### seven\n#hashtag\n\nindented"
        );
        assert_eq!(md("## **粗体**标题 #"), "粗体标题");
    }

    #[test]
    fn bullets_get_a_dot_and_numbers_stay() {
        assert_eq!(
            md("- a\n* b\n+ c\n  - nested\n- [ ] todo\n- [x] done\n-not a bullet\n- "),
            "• a\n• b\n• c\n  • nested\n☐ todo\n☑ done\n-not a bullet\n•"
        );
        let numbered = "1. one\n2) two\n10. **ten**";
        assert_eq!(md(numbered), "1. one\n2) two\n10. ten");
    }

    #[test]
    fn emphasis_loses_its_marks() {
        assert_eq!(
            md("**b** *i* __b__ _i_ ~~s~~ ***bi*** ___bi___"),
            "b i b i s bi bi"
        );
        assert_eq!(
            md("这是**重点：**内容，~~删掉~~。"),
            "这是重点：内容，删掉。"
        );
        assert_eq!(md("**bold *and italic* inside**"), "bold and italic inside");
    }

    #[test]
    fn asterisks_and_underscores_that_are_not_emphasis_stay() {
        for text in [
            "snake_case_name",
            "2*3*4 = 24",
            "a * b * c",
            "3~5天",
            "*args and **kwargs",
            "x*y + y*x",
            "file_name.rs and _config.yml",
            "~/path/to",
            "**unclosed",
            "x **** y",
        ] {
            assert_eq!(md(text), text);
        }
    }

    #[test]
    fn inline_code_loses_its_backticks() {
        assert_eq!(
            md("use `let x = *p;` or ``a ` b``, not `this"),
            "use let x = *p; or a ` b, not `this"
        );
        assert_eq!(md("```inline```"), "inline");
        assert_eq!(md("` padded `"), "padded");
    }

    #[test]
    fn fenced_code_keeps_its_lines_verbatim() {
        assert_eq!(
            md("text\n```rust\n    let x = **y**;\n\n  # not a heading\n```\nafter"),
            "text\n    let x = **y**;\n\n  # not a heading\nafter"
        );
        assert_eq!(md("~~~\n- raw\n~~~~\n* item"), "- raw\n• item");
        assert_eq!(md("```\ncode *kept*"), "code *kept*");
        assert_eq!(
            md("1. step\n   ```sh\n   ls -la\n   ```\n2. next"),
            "1. step\n   ls -la\n2. next"
        );
        // A shorter fence doesn't close a longer one.
        assert_eq!(md("````\n```\n````\nx"), "```\nx");
    }

    #[test]
    fn links_keep_their_url() {
        assert_eq!(
            md("see [官网](https://a.com/x_y_z) and [https://b.com](https://b.com)"),
            "see 官网 (https://a.com/x_y_z) and https://b.com"
        );
        assert_eq!(
            md("[t](<https://c.com/a b> \"title\") [u](https://d.com 'title')"),
            "t (https://c.com/a b) u (https://d.com)"
        );
        assert_eq!(
            md("[wiki](https://en.wikipedia.org/wiki/Rust_(language))"),
            "wiki (https://en.wikipedia.org/wiki/Rust_(language))"
        );
        assert_eq!(md("**[加粗](https://x.cn)**"), "加粗 (https://x.cn)");
        assert_eq!(
            md("[**重要**通知](https://x.cn/n)"),
            "重要通知 (https://x.cn/n)"
        );
        assert_eq!(md("[outer [inner](u1)](u2)"), "outer inner (u1) (u2)");
        assert_eq!(md("[no url]()"), "no url");
        for text in [
            "[1] and [a] (b)",
            "a < b > c",
            "<b>html</b>",
            "[open](nothing",
        ] {
            assert_eq!(md(text), text);
        }
    }

    #[test]
    fn autolinks_and_bare_urls_stay_whole() {
        assert_eq!(md("<https://a.com/p?q=1>"), "https://a.com/p?q=1");
        let bare = "https://x.com/_a_/b and (https://y.com/a_b_) 看https://z.cn/__x__";
        assert_eq!(md(bare), bare);
        assert_eq!(md("**https://x.com/a**"), "https://x.com/a");
    }

    #[test]
    fn images_become_their_alt_and_url() {
        assert_eq!(
            md("![猫](https://img.cn/c.png) ![](https://img.cn/d.png) !not"),
            "猫 (https://img.cn/c.png) https://img.cn/d.png !not"
        );
    }

    #[test]
    fn blockquotes_get_a_bar() {
        assert_eq!(
            md("> 引用\n> > 嵌套\n>\n> - 列表\n>## 标题"),
            "│ 引用\n│ │ 嵌套\n│\n│ • 列表\n│ 标题"
        );
    }

    #[test]
    fn rules_become_a_line() {
        let rule = RULE;
        assert_eq!(
            md("a\n---\n***\n_ _ _\n- - -\nb\n--"),
            format!("a\n{rule}\n{rule}\n{rule}\n{rule}\nb\n--")
        );
    }

    #[test]
    fn tables_become_rows_of_cells() {
        assert_eq!(
            md("| 名称 | 价格 |\n|:---|---:|\n| 苹果 | **3**元 |\n| `a|b` | x \\| y |\n\nafter"),
            "名称 | 价格\n苹果 | 3元\na|b | x | y\n\nafter"
        );
        assert_eq!(md("a | b\n-|-\nc | d"), "a | b\nc | d");
        // Without a delimiter row, pipes are text.
        assert_eq!(md("a | b\nc | d"), "a | b\nc | d");
    }

    #[test]
    fn escapes_give_the_character() {
        assert_eq!(
            md("\\*not\\* \\_x\\_ \\# C:\\Users \\[a](b)"),
            "*not* _x_ # C:\\Users [a](b)"
        );
    }

    #[test]
    fn line_endings_become_newlines() {
        assert_eq!(md("a\r\nb\rc\r\n"), "a\nb\nc\n");
        assert_eq!(
            Composer::new().markdown(false).render("**a**\r\n"),
            "**a**\n"
        );
    }

    #[test]
    fn plain_text_is_unchanged() {
        let text = "你好，世界！\n\n  缩进\t制表\n1. 第一\n价格：100元（含税）。 Email: a@b.c! (ok) 50% = 1/2\n　　全角缩进\n\n";
        assert_eq!(md(text), text);
    }

    #[test]
    fn boundaries_are_ranked() {
        let text = "a b。c\nd\n\ne，f. g 3.1 “好。”他";
        assert_eq!(rank_before(text, "b"), Some(Rank::Clause));
        assert_eq!(rank_before(text, "c"), Some(Rank::Sentence));
        assert_eq!(rank_before(text, "d"), Some(Rank::Line));
        assert_eq!(rank_before(text, "e"), Some(Rank::Paragraph));
        assert_eq!(rank_before(text, "f"), Some(Rank::Clause));
        assert_eq!(rank_before(text, "g"), Some(Rank::Sentence));
        assert_eq!(rank_before(text, "。c"), None);
        assert_eq!(rank_before(text, "，"), None);
        assert_eq!(rank_before(text, ".1"), None);
        assert_eq!(rank_before(text, "1"), None);
        assert_eq!(rank_before(text, "”"), None);
        assert_eq!(rank_before(text, "他"), Some(Rank::Sentence));
    }

    #[test]
    fn cuts_after_a_blank_line_first() {
        let text = format!("{}\n\n{}", "a ".repeat(20), "b ".repeat(20));
        let parts = split_plain(64, &text);
        let b = "b ".repeat(20).trim_end().to_owned();
        assert_eq!(parts, [format!("{}\n\n", "a ".repeat(20)), b]);
    }

    #[test]
    fn cuts_after_a_line_before_a_space() {
        let text = format!("{}\n{}", "a ".repeat(20), "b ".repeat(20));
        let parts = split_plain(64, &text);
        let b = "b ".repeat(20).trim_end().to_owned();
        assert_eq!(parts, [format!("{}\n", "a ".repeat(20)), b]);
    }

    #[test]
    fn cuts_after_a_sentence_before_a_clause() {
        assert_eq!(
            split_plain(40, "今天天气很好。我们去公园散步吧，好不好"),
            ["今天天气很好。", "我们去公园散步吧，好不好"]
        );
        assert_eq!(
            split_plain(32, "One two three four. Five six, seven eight nine"),
            ["One two three four. ", "Five six, seven eight nine"]
        );
    }

    #[test]
    fn cuts_after_a_clause_or_a_space() {
        assert_eq!(
            split_plain(40, "我们去公园散步吧，好不好呀呀呀呀呀"),
            ["我们去公园散步吧，", "好不好呀呀呀呀呀"]
        );
        assert_eq!(
            split_plain(16, "alpha beta gamma delta"),
            ["alpha beta ", "gamma delta"]
        );
    }

    #[test]
    fn a_blank_line_early_in_the_part_loses_to_a_late_space() {
        // The paragraph break would leave the part nearly empty.
        let text = format!("ab\n\n{}", "word ".repeat(10));
        let parts = split_plain(32, &text);
        assert_eq!(parts.first().map(String::len), Some(29));
    }

    #[test]
    fn chinese_without_punctuation_is_cut_between_characters() {
        let parts = split_plain(40, &"中".repeat(30));
        assert_eq!(parts, ["中".repeat(13), "中".repeat(13), "中".repeat(4)]);
    }

    #[test]
    fn a_three_byte_character_straddling_the_limit_moves_to_the_next_part() {
        let text = format!("{}中b", "a".repeat(15));
        assert_eq!(split_plain(16, &text), ["a".repeat(15), "中b".to_owned()]);
        let exact = format!("{}中", "a".repeat(13));
        assert_eq!(split_plain(16, &exact), [exact]);
    }

    #[test]
    fn emoji_sequences_stay_whole() {
        let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
        assert_eq!(family.len(), 25);
        assert_eq!(
            split_plain(60, &family.repeat(3)),
            [family.repeat(2), family.to_owned()]
        );
        let thumb = "👍🏽";
        assert_eq!(
            split_plain(20, &thumb.repeat(5)),
            [thumb.repeat(2), thumb.repeat(2), thumb.to_owned()]
        );
        // Cutting at 20 bytes would split the third flag into two regional indicators.
        assert_eq!(split_plain(20, "🇨🇳🇺🇸🇯🇵"), ["🇨🇳🇺🇸", "🇯🇵"]);
        assert_eq!(
            split_plain(16, "1\u{fe0f}\u{20e3}".repeat(3).as_str()).len(),
            2
        );
    }

    #[test]
    fn combining_marks_stay_with_their_letter() {
        let e = "e\u{301}";
        assert_eq!(split_plain(16, &e.repeat(10)), [e.repeat(5), e.repeat(5)]);
    }

    #[test]
    fn a_grapheme_longer_than_a_part_is_cut_between_characters() {
        let giant = format!("a{}", "\u{301}".repeat(40));
        let text = format!("{giant} b");
        let parts = split_plain(16, &text);
        assert_eq!(parts.concat(), text);
        assert!(parts.len() >= 6, "{parts:?}");
        for part in &parts {
            assert!(!part.is_empty() && part.len() <= 16, "{parts:?}");
            assert!(has_visible(part));
        }
        assert_eq!(
            parts.first().map(String::as_str),
            Some("a\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}")
        );
    }

    #[test]
    fn long_whitespace_is_shortened_and_blank_text_has_no_parts() {
        let plan = Composer::new()
            .max_bytes(16)
            .compose(&format!("a{}b", " ".repeat(100)));
        assert_eq!(plan.text(), "a      b");
        assert_eq!(plan.parts(), ["a      b"]);
        let blank = Composer::new().compose("  \n\t \u{3000}");
        assert!(blank.is_empty());
        assert_eq!(blank.text(), "");
        assert!(Composer::new().compose("").is_empty());
    }

    #[test]
    fn blank_lines_before_and_whitespace_after_the_text_are_not_sent() {
        assert_eq!(
            split_plain(2048, " \n\n  hello\n world \n\n"),
            ["  hello\n world"]
        );
        // Trailing whitespace would otherwise cost a message of its own.
        let text = format!("{}{}", "a".repeat(16), "\n".repeat(5));
        assert_eq!(split_plain(16, &text), ["a".repeat(16)]);
    }

    #[test]
    fn max_bytes_has_a_floor() {
        let parts = split_plain(0, "abcdefghijklmnopqrstuvwxyz");
        assert_eq!(parts, ["abcdefghijklmnop", "qrstuvwxyz"]);
    }

    #[test]
    fn the_marker_is_visible_and_small() {
        assert_eq!(fitted_marker("   ", 2048), TRUNCATION_MARKER);
        assert_eq!(fitted_marker("(more)", 16), "(mor");
        assert_eq!(fitted_marker("……", 16), "…");
    }
}
