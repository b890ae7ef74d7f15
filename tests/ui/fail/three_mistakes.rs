wecom_kf::endpoints!(relative_to = SourceFile, "three_mistakes.toml");

fn main() {}
