wecom_kf::endpoints!(relative_to = SourceFile, "missing_required_key.toml");

fn main() {}
