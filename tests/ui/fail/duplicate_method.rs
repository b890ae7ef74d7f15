wecom_kf::endpoints!(relative_to = SourceFile, "duplicate_method.toml");

fn main() {}
