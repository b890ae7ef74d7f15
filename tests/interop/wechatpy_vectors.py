#!/usr/bin/env python3
"""Interoperability vectors for WeCom's callback crypto (WXBizMsgCrypt), made by wechatpy.

This script uses an independent implementation, the PyPI package `wechatpy`
(`wechatpy.work.crypto.WeChatCrypto`), to

* `generate`: write tests/fixtures/callback_vectors.json. wechatpy does every
  encryption, signature and decryption. The Rust tests decrypt these vectors and,
  given the recorded 16-byte random prefix, re-encrypt them byte for byte.
* `check-ours PATH`: read a JSON file written by our Rust code and check with
  wechatpy that every signature verifies and every ciphertext decrypts to the
  stated plaintext for the stated receive id.

See README.md next to this file. Python 3.11, wechatpy pinned in requirements.txt.

How wechatpy encrypts (wechatpy/crypto/base.py, BasePrpCrypto._encrypt):
    to_binary(self.get_random_string())      # 16 chars from wechatpy.utils.random_string
    + struct.pack("I", htonl(len(msg)))      # 4-byte big-endian length
    + msg + receive_id, PKCS#7 with a 32-byte block, AES-256-CBC, IV = key[:16], base64.
`get_random_string` looks up the module-global name `random_string` in
wechatpy.crypto.base at call time. We swap that global for a function that
returns our fixed 16 bytes (see `fixed_random_prefix`). It may return bytes,
because `to_binary` passes bytes through unchanged, so prefixes can be arbitrary
bytes rather than wechatpy's usual 16 distinct ASCII letters and digits.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.metadata
import json
import string
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Iterator

try:
    import wechatpy.crypto.base as wp_base
    from wechatpy.crypto.base import WeChatCipher
    from wechatpy.exceptions import InvalidSignatureException
    from wechatpy.utils import WeChatSigner
    from wechatpy.work.crypto import PrpCrypto, WeChatCrypto
    from wechatpy.work.exceptions import InvalidCorpIdException
except ImportError as exc:  # pragma: no cover - environment problem, not a test failure
    sys.exit(
        f"cannot import wechatpy's WeCom crypto ({exc}).\n"
        "Install the pinned version: pip install -r tests/interop/requirements.txt"
    )

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT_REL = "tests/interop/wechatpy_vectors.py"
DEFAULT_OUTPUT = REPO_ROOT / "tests" / "fixtures" / "callback_vectors.json"

BLOCK = 32  # WXBizMsgCrypt pads to 32 bytes, not AES's 16
PREFIX_LEN = 16


def wechatpy_version() -> str:
    return importlib.metadata.version("wechatpy")


# --------------------------------------------------------------------------------------
# Callback configurations: (token, EncodingAESKey, receive id).
# The keys have different base64 properties on purpose:
#   * doc_sample: the key from WeCom's own documentation. Its last character 'C' leaves
#     non-zero bits after the 32 key bytes (the canonical spelling ends in 'A'), so a
#     strict base64 decoder that rejects trailing bits would refuse WeCom's own example.
#   * kf_corp: canonical base64 that contains '+' and '/' (standard alphabet, not URL-safe).
#   * component: letters and digits only, like the keys WeCom's console generates, and
#     non-canonical (last character 'z': both spare bits set).
#   * short_token: letters and digits only, canonical; a 2-character token.
# --------------------------------------------------------------------------------------
CONFIGS: dict[str, dict[str, str]] = {
    "doc_sample": {
        "token": "QDG6eK",
        "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "receive_id": "wx5823bf96d3bd56c7",
    },
    "kf_corp": {
        "token": "kfCallbackToken2024",
        "encoding_aes_key": "zV07eA+KSj+NSI4ZpGoMNW/whIbJ07RmMlZvO3skng0",
        "receive_id": "ww12345678910",
    },
    "component": {
        "token": "Tk9xAbCdEfGhIjKlMnOpQrStUvWxYz01",
        "encoding_aes_key": "jpmbr7dFyxIIXcoQ6xJ8GmMvNkXes3RyCOvQEvmqtaz",
        "receive_id": "wwf0a1b2c3d4e5f6a7",
    },
    "short_token": {
        "token": "a1",
        "encoding_aes_key": "lx806Ye4NPe0ddnzxATpehAf5nM45YxSj64asAW3BZA",
        "receive_id": "wwabcdef0123456789",
    },
}


# --------------------------------------------------------------------------------------
# Deterministic per-case inputs, all derived from the case kind and index.
# --------------------------------------------------------------------------------------
def derived_bytes(label: str, n: int) -> bytes:
    """n bytes (n <= 32) that depend only on `label`."""
    return hashlib.sha256(f"wecom-kf interop/{label}".encode()).digest()[:n]


def case_prefix(kind: str, index: int) -> bytes:
    """The 16-byte 'random' prefix of case `index`: arbitrary bytes, not only ASCII."""
    return derived_bytes(f"prefix/{kind}/{index}", PREFIX_LEN)


def case_timestamp(kind: str, index: int) -> str:
    base = 1700000000 if kind == "message" else 1710000000
    return str(base + 97 * index)


def case_nonce(kind: str, index: int) -> str:
    """WeCom nonces are usually digits; alternate digits and letters+digits."""
    raw = derived_bytes(f"nonce/{kind}/{index}", 10)
    if index % 2 == 0:
        return "".join(str(b % 10) for b in raw)
    alphabet = string.ascii_letters + string.digits
    return "".join(alphabet[b % len(alphabet)] for b in raw)


# --------------------------------------------------------------------------------------
# Plaintext builders (the decrypted XML WeCom would send).
# --------------------------------------------------------------------------------------
DOC_KF_TOKEN = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR"


def kf_msg_or_event(to_user: str, create_time: int, token: str, open_kfid: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[kf_msg_or_event]]></Event>"
        f"<Token><![CDATA[{token}]]></Token>"
        f"<OpenKfId><![CDATA[{open_kfid}]]></OpenKfId></xml>"
    )


def kf_msg_or_event_pretty(to_user: str, create_time: int, token: str, open_kfid: str,
                           newline: str = "\n") -> str:
    lines = [
        "<xml>",
        f"  <ToUserName><![CDATA[{to_user}]]></ToUserName>",
        f"  <CreateTime>{create_time}</CreateTime>",
        "  <MsgType><![CDATA[event]]></MsgType>",
        "  <Event><![CDATA[kf_msg_or_event]]></Event>",
        f"  <Token><![CDATA[{token}]]></Token>",
        f"  <OpenKfId><![CDATA[{open_kfid}]]></OpenKfId>",
        "</xml>",
    ]
    return newline.join(lines)


def kf_account_auth_change(to_user: str, create_time: int, added: list[str],
                           removed: list[str]) -> str:
    parts = [
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>",
        f"<CreateTime>{create_time}</CreateTime>",
        "<MsgType><![CDATA[event]]></MsgType>",
        "<Event><![CDATA[kf_account_auth_change]]></Event>",
    ]
    parts += [f"<AuthAddOpenKfId><![CDATA[{k}]]></AuthAddOpenKfId>" for k in added]
    parts += [f"<AuthDelOpenKfId><![CDATA[{k}]]></AuthDelOpenKfId>" for k in removed]
    parts.append("</xml>")
    return "".join(parts)


def change_contact(to_user: str, create_time: int, change_type: str, user_id: str,
                   name: str, position: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_contact]]></Event>"
        f"<ChangeType>{change_type}</ChangeType>"
        f"<UserID><![CDATA[{user_id}]]></UserID>"
        f"<Name><![CDATA[{name}]]></Name>"
        "<Department><![CDATA[1,2,3]]></Department>"
        f"<Position><![CDATA[{position}]]></Position>"
        "<Gender>1</Gender><Status>1</Status></xml>"
    )


def agent_text_message(to_user: str, create_time: int, content: str, msg_id: str) -> str:
    """An ordinary self-built-app text message: not kf, but the same envelope."""
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        "<FromUserName><![CDATA[zhangsan]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content>"
        f"<MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>"
    )


def frame_len(msg: str, receive_id: str) -> int:
    """Bytes before padding: prefix + length field + msg + receive id."""
    return PREFIX_LEN + 4 + len(msg.encode()) + len(receive_id.encode())


def pad_len(msg: str, receive_id: str) -> int:
    """The PKCS#7 pad value for this frame: 1..32, a whole block of 32 when aligned."""
    return BLOCK - frame_len(msg, receive_id) % BLOCK


def fit_to_pad(build: Callable[[str], str], unit: str, receive_id: str, want_pad: int,
               min_units: int = 0) -> str:
    """Grow a filler (repeats of `unit`) until the frame gets pad value `want_pad`."""
    for n in range(min_units, min_units + 4 * BLOCK):
        msg = build(unit * n)
        if pad_len(msg, receive_id) == want_pad:
            return msg
    raise AssertionError(f"no filler length gives pad {want_pad}")


# --------------------------------------------------------------------------------------
# Case lists. Each message case: name, config, plaintext, optional nonce and pad check.
# --------------------------------------------------------------------------------------
def message_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def add(name: str, config: str, plaintext: str, **extra: Any) -> None:
        cases.append({"name": name, "config": config, "plaintext": plaintext, **extra})

    corp = {name: cfg["receive_id"] for name, cfg in CONFIGS.items()}

    # kf_msg_or_event, the callback that says "call sync_msg now".
    add("kf_msg_or_event_doc_example", "kf_corp",
        kf_msg_or_event("ww12345678910", 1348831860, DOC_KF_TOKEN, "wkxxxxxxx"))
    add("kf_msg_or_event_second_account", "kf_corp",
        kf_msg_or_event("ww12345678910", 1700000123, "ENCAxS8mBHk2R5Vq0WJd7fPz3LcTnYgUo4eK6aZr1iQ",
                        "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q"))
    add("kf_msg_or_event_pretty_printed", "doc_sample",
        kf_msg_or_event_pretty(corp["doc_sample"], 1700000456,
                               "ENCAq7Zt9LmW3xYvB2nC5kD8fG1hJ4pR6sT0uV",
                               "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw"))
    add("kf_msg_or_event_crlf_line_endings", "doc_sample",
        kf_msg_or_event_pretty(corp["doc_sample"], 1700000789,
                               "ENCAcrlfTOKEN0123456789abcdefghijklmnopq",
                               "wkAJ2GCAAAcrlf0000000000000000", newline="\r\n"))
    add("kf_msg_or_event_component", "component",
        kf_msg_or_event(corp["component"], 1700001000,
                        "ENCAu1v2w3x4y5z6A7B8C9D0E1F2G3H4I5J6K7L8M9N",
                        "wkAJ2GCAAAcomponentAAAAAAAAAAAAA"))
    add("kf_msg_or_event_short_token_config", "short_token",
        kf_msg_or_event(corp["short_token"], 1700001111, "ENCA0", "wk0"))

    # Other events that arrive on the same URL.
    add("kf_account_auth_change_add_and_del", "component",
        kf_account_auth_change(corp["component"], 1700002000,
                               ["wkAJ2GCAAAadd1111111111111111111", "wkAJ2GCAAAadd2222222222222222222"],
                               ["wkAJ2GCAAAdel3333333333333333333"]))
    add("kf_account_auth_change_add_only", "kf_corp",
        kf_account_auth_change(corp["kf_corp"], 1700002100,
                               ["wkAJ2GCAAAaddOnly00000000000000"], []))
    add("change_contact_create_user_zh", "doc_sample",
        change_contact(corp["doc_sample"], 1700003000, "create_user", "zhangsan",
                       "张三", "产品经理"))
    add("change_contact_update_user_zh", "short_token",
        change_contact(corp["short_token"], 1700003100, "update_user", "lisi",
                       "李四（客服主管）", "客服·一线"))
    add("agent_text_message_emoji", "kf_corp",
        agent_text_message(corp["kf_corp"], 1700003200,
                           "你好 👋 émoji and 4-byte UTF-8: 𝄞😀", "6104123456789012345"))
    add("agent_text_message_json_escapes", "doc_sample",
        agent_text_message(corp["doc_sample"], 1700003300,
                           'He said "hi" \\ C:\\temp\\new\t&amp; 1 &lt; 2 / end', "6104000000000000001"))

    # Padding boundaries, for every configuration with a long-enough receive id:
    # frame a multiple of 32 (pad = 32, a whole block), 32k-1 (pad = 1), 32k+1 (pad = 31).
    for config in ("doc_sample", "kf_corp", "component"):
        rid = corp[config]
        for label, want in (("pad32_aligned", 32), ("pad1", 1), ("pad31", 31)):
            build = lambda filler, rid=rid: kf_msg_or_event(rid, 1700004000, "ENCA" + filler,
                                                            "wkAJ2GCAAApad")
            msg = fit_to_pad(build, "x", rid, want, min_units=20)
            add(f"{label}_{config}", config, msg, expect_pad=want)

    # Unicode: alignment in bytes, not characters (each '客' is 3 bytes of UTF-8).
    rid = corp["component"]
    msg = fit_to_pad(lambda f: change_contact(rid, 1700005000, "update_user", "wangwu",
                                              "王五" + f, "客服"), "客", rid, 32)
    add("pad32_aligned_unicode", "component", msg, expect_pad=32)
    rid = corp["short_token"]
    msg = fit_to_pad(lambda f: agent_text_message(rid, 1700005100, "中文内容" + f,
                                                  "6104000000000000002"), "客", rid, 1)
    add("pad1_unicode", "short_token", msg, expect_pad=1)

    # Minimal bodies.
    add("minimal_xml_doc_sample", "doc_sample", "<xml></xml>")
    add("minimal_xml_short_token", "short_token", "<xml></xml>")

    # Long bodies, about 5 KB.
    many = [f"wkAJ2GCAAA{n:022d}" for n in range(62)]
    add("long_kf_account_auth_change_5kb", "kf_corp",
        kf_account_auth_change(corp["kf_corp"], 1700006000, many[:45], many[45:]))
    add("long_text_zh_5kb", "component",
        agent_text_message(corp["component"], 1700006100,
                           "微信客服消息回调测试，" * 150 + "完", "6104000000000000003"))

    # Signature sort edge: the nonce starts with the timestamp, so sorting by byte
    # prefix matters ("1700…" < "1700…7").
    ts_index = len(cases)
    add("sort_nonce_extends_timestamp", "short_token",
        kf_msg_or_event(corp["short_token"], 1700007000, "ENCAsort", "wkSort"),
        nonce=case_timestamp("message", ts_index) + "7")

    return cases


def url_check_cases() -> list[dict[str, Any]]:
    """URL verification: echostr decrypts to a number-like string that we echo back."""
    cases: list[dict[str, Any]] = [
        {"name": "url_doc_sample", "config": "doc_sample", "reply": "1616140317555161061"},
        {"name": "url_kf_corp", "config": "kf_corp", "reply": "5927782489442352469"},
        {"name": "url_component", "config": "component", "reply": "3846719284"},
        {"name": "url_short_token", "config": "short_token", "reply": "804126573912"},
    ]
    rid = CONFIGS["kf_corp"]["receive_id"]
    reply = fit_to_pad(lambda f: "7" + f, "3", rid, 32)
    cases.append({"name": "url_pad32_aligned", "config": "kf_corp", "reply": reply, "expect_pad": 32})
    rid = CONFIGS["doc_sample"]["receive_id"]
    reply = fit_to_pad(lambda f: "9" + f, "1", rid, 1)
    cases.append({"name": "url_pad1", "config": "doc_sample", "reply": reply, "expect_pad": 1})
    return cases


# --------------------------------------------------------------------------------------
# Driving wechatpy.
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def fixed_random_prefix(prefix: bytes) -> Iterator[list[int]]:
    """Make wechatpy's next encryptions use `prefix` as the 16 'random' bytes.

    Yields a list that records each call, so the caller can check that wechatpy
    really asked us (once) instead of getting randomness from somewhere else.
    """
    assert len(prefix) == PREFIX_LEN
    calls: list[int] = []

    def fake_random_string(length: int = PREFIX_LEN) -> bytes:
        if length != PREFIX_LEN:
            raise AssertionError(f"wechatpy asked for {length} random chars, expected 16")
        calls.append(length)
        return prefix

    original = wp_base.random_string
    wp_base.random_string = fake_random_string
    try:
        yield calls
    finally:
        wp_base.random_string = original


def wechatpy_encrypt(cfg: dict[str, str], plaintext: str, timestamp: str, nonce: str,
                     prefix: bytes) -> tuple[str, str]:
    """Encrypt and sign with WeChatCrypto.encrypt_message; return (encrypt, msg_signature).

    encrypt_message returns a passive-reply XML document
    (<Encrypt>, <MsgSignature>, <TimeStamp>, <Nonce>); we read the two values from it.
    """
    crypto = WeChatCrypto(cfg["token"], cfg["encoding_aes_key"], cfg["receive_id"])
    with fixed_random_prefix(prefix) as calls:
        reply_xml = crypto.encrypt_message(plaintext, nonce, timestamp)
    if len(calls) != 1:
        raise AssertionError(f"wechatpy drew randomness {len(calls)} times, expected once")
    root = ET.fromstring(reply_xml)
    if root.findtext("TimeStamp") != timestamp or root.findtext("Nonce") != nonce:
        raise AssertionError("wechatpy reply does not echo our timestamp/nonce")
    return root.findtext("Encrypt") or "", root.findtext("MsgSignature") or ""


def post_body(receive_id: str, encrypt: str) -> str:
    """The outer XML WeCom POSTs to the callback URL."""
    return (
        f"<xml><ToUserName><![CDATA[{receive_id}]]></ToUserName>"
        "<AgentID><![CDATA[]]></AgentID>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    )


def raw_frame(encoding_aes_key: str, encrypt: str) -> bytes:
    """AES-decrypt with wechatpy's own cipher object, keeping prefix and padding."""
    key = base64.b64decode(encoding_aes_key + "=")
    return WeChatCipher(key).decrypt(base64.b64decode(encrypt, validate=True))


def build_vectors() -> dict[str, Any]:
    messages = []
    for index, case in enumerate(message_cases()):
        cfg = CONFIGS[case["config"]]
        timestamp = case_timestamp("message", index)
        nonce = case.get("nonce", case_nonce("message", index))
        prefix = case_prefix("message", index)
        encrypt, signature = wechatpy_encrypt(cfg, case["plaintext"], timestamp, nonce, prefix)
        messages.append({
            "name": case["name"],
            "token": cfg["token"],
            "encoding_aes_key": cfg["encoding_aes_key"],
            "receive_id": cfg["receive_id"],
            "timestamp": timestamp,
            "nonce": nonce,
            "random_prefix_hex": prefix.hex(),
            "plaintext": case["plaintext"],
            "encrypt": encrypt,
            "msg_signature": signature,
            "post_body": post_body(cfg["receive_id"], encrypt),
        })

    url_checks = []
    for index, case in enumerate(url_check_cases()):
        cfg = CONFIGS[case["config"]]
        timestamp = case_timestamp("url", index)
        nonce = case_nonce("url", index)
        # The echostr is an ordinary encrypted blob; its signature is computed the same
        # way as for a POST, over [token, timestamp, nonce, echostr].
        echostr, signature = wechatpy_encrypt(cfg, case["reply"], timestamp, nonce,
                                              case_prefix("url", index))
        url_checks.append({
            "name": case["name"],
            "token": cfg["token"],
            "encoding_aes_key": cfg["encoding_aes_key"],
            "receive_id": cfg["receive_id"],
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
            "msg_signature": signature,
            "reply": case["reply"],
        })

    return {
        "generator": f"wechatpy {wechatpy_version()} via {SCRIPT_REL} generate",
        "messages": messages,
        "url_checks": url_checks,
    }


def verify_generated(data: dict[str, Any]) -> None:
    """Decrypt every generated case back with wechatpy; raise on any disagreement."""
    pads = {c["name"]: c.get("expect_pad") for c in message_cases() + url_check_cases()}
    names = [c["name"] for c in data["messages"] + data["url_checks"]]
    if len(names) != len(set(names)):
        raise AssertionError("duplicate case names")

    for m in data["messages"]:
        crypto = WeChatCrypto(m["token"], m["encoding_aes_key"], m["receive_id"])
        # The POST path: wechatpy parses the outer XML, checks the signature, decrypts.
        got = crypto.decrypt_message(m["post_body"], m["msg_signature"], m["timestamp"], m["nonce"])
        if got != m["plaintext"]:
            raise AssertionError(f"{m['name']}: wechatpy decrypts to something else")
        # A wrong signature must be refused (guards against a no-op check).
        bad = ("0" if m["msg_signature"][0] != "0" else "1") + m["msg_signature"][1:]
        try:
            crypto.decrypt_message(m["post_body"], bad, m["timestamp"], m["nonce"])
        except InvalidSignatureException:
            pass
        else:
            raise AssertionError(f"{m['name']}: wechatpy accepted a wrong signature")
        check_frame(m["name"], m["encoding_aes_key"], m["encrypt"], m["plaintext"],
                    m["receive_id"], m["random_prefix_hex"], pads.get(m["name"]))

    for u in data["url_checks"]:
        crypto = WeChatCrypto(u["token"], u["encoding_aes_key"], u["receive_id"])
        # The GET path: check_signature verifies msg_signature and decrypts echostr.
        got = crypto.check_signature(u["msg_signature"], u["timestamp"], u["nonce"], u["echostr"])
        if got != u["reply"]:
            raise AssertionError(f"{u['name']}: wechatpy's check_signature returned {got!r}")
        check_frame(u["name"], u["encoding_aes_key"], u["echostr"], u["reply"],
                    u["receive_id"], None, pads.get(u["name"]))


def check_frame(name: str, key: str, encrypt: str, msg: str, receive_id: str,
                prefix_hex: str | None, expect_pad: int | None) -> None:
    """Look at the decrypted frame itself (wechatpy's decrypt hides prefix and padding)."""
    frame = raw_frame(key, encrypt)
    if prefix_hex is not None and frame[:PREFIX_LEN].hex() != prefix_hex:
        raise AssertionError(f"{name}: recorded random prefix is not the one used")
    pad = frame[-1]
    if not 1 <= pad <= BLOCK or frame[-pad:] != bytes([pad]) * pad or len(frame) % BLOCK:
        raise AssertionError(f"{name}: wechatpy produced unexpected padding")
    if expect_pad is not None and pad != expect_pad:
        raise AssertionError(f"{name}: pad {pad}, wanted {expect_pad}")
    body = msg.encode() + receive_id.encode()
    if frame[PREFIX_LEN:-pad] != len(msg.encode()).to_bytes(4, "big") + body:
        raise AssertionError(f"{name}: frame layout differs from prefix|len|msg|receiveid")


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def cmd_generate(args: argparse.Namespace) -> int:
    data = build_vectors()
    text = render(data)
    # Build twice: any randomness that escaped the patch would show up here.
    if render(build_vectors()) != text:
        print("error: two builds differ; output would not be deterministic", file=sys.stderr)
        return 1
    # Verify the serialized form, exactly what the Rust tests will read.
    verify_generated(json.loads(text))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(data['messages'])} messages, {len(data['url_checks'])} url checks, "
          f"{data['generator']}); all re-verified with wechatpy")
    return 0


# --------------------------------------------------------------------------------------
# check-ours: verify output of our Rust implementation.
# --------------------------------------------------------------------------------------
MESSAGE_FIELDS = ("name", "token", "encoding_aes_key", "receive_id", "timestamp", "nonce",
                  "plaintext", "encrypt", "msg_signature")
URL_FIELDS = ("name", "token", "encoding_aes_key", "receive_id", "timestamp", "nonce",
              "echostr", "msg_signature", "reply")


def expected_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce, encrypt)
    return signer.signature


def first_difference(a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at char {i}: {a[i:i + 20]!r} vs {b[i:i + 20]!r}"
    return f"lengths {len(a)} vs {len(b)}"


def check_one(case: dict[str, Any], blob_field: str, text_field: str,
              fields: tuple[str, ...]) -> list[str]:
    """Problems with one case ([] when it passes)."""
    missing = [f for f in fields if not isinstance(case.get(f), str)]
    if missing:
        return [f"missing or non-string field(s): {', '.join(missing)}"]
    problems: list[str] = []
    token, key, rid = case["token"], case["encoding_aes_key"], case["receive_id"]
    ts, nonce, sig = case["timestamp"], case["nonce"], case["msg_signature"]
    blob, want = case[blob_field], case[text_field]

    try:
        crypto = WeChatCrypto(token, key, rid)
    except Exception as exc:  # binascii.Error, or AssertionError for a non-32-byte key
        return [f"wechatpy rejects encoding_aes_key {key!r}: {type(exc).__name__} {exc}"]

    # 1. wechatpy, decryption alone: AES, msg_len, receive id (PrpCrypto.decrypt).
    got = None
    try:
        got = PrpCrypto(crypto.key).decrypt(blob, rid)
    except InvalidCorpIdException:
        problems.append(f"decrypted receive id is not {rid!r}")
    except Exception as exc:  # wechatpy raises plain struct/index/unicode/value errors
        problems.append(f"wechatpy cannot decrypt {blob_field}: {type(exc).__name__}: {exc}")
    if got is not None and got != want:
        problems.append(f"{blob_field} decrypts to a different {text_field} "
                        f"({first_difference(got, want)})")

    # 2. wechatpy, the whole receiving path including the signature: decrypt_message on
    #    the POST body for messages, check_signature for URL verification.
    try:
        if blob_field == "encrypt":
            crypto.decrypt_message(post_body(rid, blob), sig, ts, nonce)
        else:
            crypto.check_signature(sig, ts, nonce, blob)
    except InvalidSignatureException:
        problems.append(f"msg_signature {sig!r} does not verify; wechatpy computes "
                        f"{expected_signature(token, ts, nonce, blob)!r}")
    except Exception:
        pass  # a decryption failure, already reported by step 1

    # 3. Strict checks wechatpy skips (see README "What wechatpy accepts"): our encoder
    #    must produce exactly what WeCom's documentation describes.
    problems += strict_problems(key, blob, blob_field, want, rid, sig, case.get("random_prefix_hex"))
    return problems


def strict_problems(key: str, blob: str, blob_field: str, msg: str, rid: str, sig: str,
                    prefix_hex: Any) -> list[str]:
    out: list[str] = []
    if len(key) != 43:
        out.append(f"strict: encoding_aes_key has {len(key)} chars, not 43")
    if len(sig) != 40 or any(c not in "0123456789abcdef" for c in sig):
        out.append("strict: msg_signature is not 40 lowercase hex digits")
    try:
        raw = base64.b64decode(blob, validate=True)
    except ValueError as exc:
        return out + [f"strict: {blob_field} is not standard padded base64: {exc}"]
    if base64.b64encode(raw).decode() != blob:
        out.append(f"strict: {blob_field} is not canonical base64")
    if not raw or len(raw) % BLOCK:
        return out + [f"strict: ciphertext is {len(raw)} bytes, not a positive multiple of 32"]
    try:
        frame = raw_frame(key, blob)
    except Exception as exc:
        return out + [f"strict: cannot AES-decrypt: {type(exc).__name__}: {exc}"]
    pad = frame[-1]
    if not 1 <= pad <= BLOCK:
        return out + [f"strict: pad byte {pad} is outside 1..32"]
    if frame[-pad:] != bytes([pad]) * pad:
        out.append(f"strict: the last {pad} bytes are not all equal to {pad}")
    want_pad = BLOCK - (PREFIX_LEN + 4 + len(msg.encode()) + len(rid.encode())) % BLOCK
    if pad != want_pad:
        out.append(f"strict: pad is {pad}, minimal 32-byte PKCS#7 padding is {want_pad}")
    inner = frame[PREFIX_LEN:-pad]
    if len(inner) >= 4:
        declared = int.from_bytes(inner[:4], "big")
        if declared != len(msg.encode()):
            out.append(f"strict: length field is {declared}, msg is {len(msg.encode())} bytes")
        elif inner[4 + declared:] != rid.encode():
            out.append("strict: bytes after msg are not exactly the receive id")
    else:
        out.append("strict: frame too short for the 4-byte length field")
    if isinstance(prefix_hex, str) and frame[:PREFIX_LEN].hex() != prefix_hex.lower():
        out.append(f"strict: random prefix is {frame[:PREFIX_LEN].hex()}, file says {prefix_hex}")
    return out


def cmd_check_ours(args: argparse.Namespace) -> int:
    path = Path(args.path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"FAIL: cannot read {path}: {exc}")
        return 1
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list) or not messages:
        print(f"FAIL: {path} has no non-empty \"messages\" list")
        return 1
    # Optional: our file may also carry URL-verification cases in the generated format.
    url_checks = data.get("url_checks") or []

    failures = 0
    for kind, cases, blob, text, fields in (("message", messages, "encrypt", "plaintext", MESSAGE_FIELDS),
                                             ("url_check", url_checks, "echostr", "reply", URL_FIELDS)):
        for i, case in enumerate(cases):
            label = case.get("name", "?") if isinstance(case, dict) else "?"
            problems = (check_one(case, blob, text, fields) if isinstance(case, dict)
                        else ["not a JSON object"])
            for problem in problems:
                print(f"FAIL {kind} [{i}] {label}: {problem}")
            failures += bool(problems)

    total = len(messages) + len(url_checks)
    if failures:
        print(f"{failures} of {total} case(s) failed")
        return 1
    print(f"wechatpy verified {len(messages)} messages")
    if url_checks:
        print(f"wechatpy verified {len(url_checks)} url checks")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write callback_vectors.json using wechatpy")
    gen.add_argument("--output", default=str(DEFAULT_OUTPUT),
                     help=f"output path (default {DEFAULT_OUTPUT.relative_to(REPO_ROOT)})")
    gen.set_defaults(func=cmd_generate)
    chk = sub.add_parser("check-ours", help="verify a JSON file written by our Rust code")
    chk.add_argument("path")
    chk.set_defaults(func=cmd_check_ours)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
