//! Compile-time checks: mistakes in an API file and misuse of the generated API fail the
//! build with a message that points at them. `.stderr` files are pinned to the toolchain
//! (rustc 1.95); regenerate with `TRYBUILD=overwrite cargo test --test ui` and review.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
