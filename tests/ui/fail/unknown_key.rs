wecom_kf::endpoints!(relative_to = SourceFile, "unknown_key.toml");

fn main() {}
